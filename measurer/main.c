/* dp-measurer: measures MEASURE tasks' inputs on this machine for its
 * device class (--device-class), through core/task. Settings and the loop:
 * worker/worker_cli.c, worker/worker.c. */
#include "worker_cli.h"

int main(int argc, char **argv) { return dp_worker_cli_main(argc, argv, 1); }
