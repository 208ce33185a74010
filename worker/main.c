/* dp-worker: a trainer of the pipeline (TRAIN, GENERATE, BASELINE, REPORT
 * tasks through core/task). Settings and the loop: worker_cli.c, worker.c. */
#include "worker_cli.h"

int main(int argc, char **argv) { return dp_worker_cli_main(argc, argv, 0); }
