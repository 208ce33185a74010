/* Helpers shared by the user commands (dp-cnn, dp-zoo, dp-perform): option
 * value parsing, error lines and the Fashion-MNIST split loader. Messages
 * start with the program name set by cli_set_prog, so every command reports
 * the same way. */
#ifndef DP_CLI_UTIL_H
#define DP_CLI_UTIL_H

#include "data/dataset.h"
#include "util/err.h"

/* The name error lines start with ("dp-zoo"); borrowed, must outlive the
 * program (a string literal). Default "dp". */
void cli_set_prog(const char *prog);

/* s as a whole decimal integer in [lo, hi] into *out; 0, or -1 after
 * "PROG: FLAG expects an integer in [LO, HI], got 'S'" on stderr. */
int cli_parse_long(const char *flag, const char *s, long lo, long hi, long *out);

/* s as a number in [lo, hi] into *out; 0, or -1 after
 * "PROG: FLAG expects a number in [LO, HI], got 'S'" on stderr. */
int cli_parse_double(const char *flag, const char *s, double lo, double hi, double *out);

/* s as a number in (0, 1), or in (0, 1] when one_ok, into *out; 0, or -1
 * after "PROG: FLAG expects a number in (0, 1), got 'S'" (or "(0, 1]"). */
int cli_parse_unit(const char *flag, const char *s, int one_ok, double *out);

/* "PROG: WHAT: STRERROR: DETAIL" on stderr; returns 1 (the exit status). */
int cli_fail(const char *what, dp_err_t err);

/* 0 when v is set, else -1 after "PROG CMD: WHAT is required" on stderr. */
int cli_need(const char *cmd, const char *what, const void *v);

/* 1 when the directory a file at path would be written in exists and can be
 * written, else 0 after "PROG: FLAG PATH: the directory DIR does not exist"
 * (or "is not a directory", "is not writable: STRERROR") on stderr. For the
 * output flags, checked before hours of work rather than at the end. */
int cli_out_dir_ok(const char *flag, const char *path);

/* cli_out_dir_ok for an output file: also 0 when path is empty, ends in '/'
 * or is a directory ("PROG: FLAG PATH: it is a directory"). */
int cli_out_file_ok(const char *flag, const char *path);

/* 1 when out is not the file in (or either does not exist yet), else 0 after
 * "PROG: FLAG OUT is WHAT, it would be overwritten" on stderr: an output must
 * not replace an input of the same run. */
int cli_out_not_input(const char *flag, const char *out, const char *what, const char *in);

/* The part of path p after its last '/'; borrowed from p. */
const char *cli_base_name(const char *p);

/* DIR/SPLIT-images-idx3-ubyte.gz and DIR/SPLIT-labels-idx1-ubyte.gz ("train"
 * or "t10k"); returns a new dataset in *out, caller destroys. */
dp_err_t cli_load_split(const char *dir, const char *split, dp_dataset_t **out);

#endif
