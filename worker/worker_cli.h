/* The shared main of dp-worker and dp-measurer (worker_cli.c). */
#ifndef DP_WORKER_WORKER_CLI_H
#define DP_WORKER_WORKER_CLI_H

/* Parses the settings, runs a worker until SIGINT/SIGTERM; returns the exit
 * status (0 stopped, 1 failed while running, 2 usage, 3 could not start). */
int dp_worker_cli_main(int argc, char **argv, int measurer);

#endif
