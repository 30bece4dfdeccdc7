#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int err_fd = -1;

static void die(const char *what, const char *arg) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "aletheia-exec: %s %s: %s", what, arg ? arg : "",
                   strerror(errno));
  if (err_fd >= 0 && n > 0) { ssize_t w = write(err_fd, buf, (size_t)n); (void)w; }
  _exit(127);
}

static unsigned long long num(const char *s) { return strtoull(s, NULL, 10); }

static void limit(int res, const char *soft, const char *hard, const char *name) {
  struct rlimit r = {(rlim_t)num(soft), (rlim_t)num(hard)};
  if (setrlimit(res, &r) != 0) die("setrlimit", name);
}

/* argv: ERR_FD UID CPU_SOFT CPU_HARD NPROC NOFILE FSIZE AS NCG CGPATH... -- COMMAND... */
int main(int argc, char **argv) {
  if (argc < 11) { fprintf(stderr, "aletheia-exec: bad usage\n"); return 127; }
  err_fd = atoi(argv[1]);
  if (fcntl(err_fd, F_SETFD, FD_CLOEXEC) != 0) die("fcntl", "err fd");
  long uid = atol(argv[2]);
  int ncg = atoi(argv[9]), at = 10;
  for (int i = 0; i < ncg; ++i, ++at) {
    int fd = open(argv[at], O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) die("join cgroup", argv[at]);
    close(fd);
  }
  if (at >= argc || strcmp(argv[at], "--") != 0 || at + 1 >= argc) die("bad usage", "--");
  limit(RLIMIT_CPU, argv[3], argv[4], "CPU");
  limit(RLIMIT_NPROC, argv[5], argv[5], "NPROC");
  limit(RLIMIT_NOFILE, argv[6], argv[6], "NOFILE");
  limit(RLIMIT_FSIZE, argv[7], argv[7], "FSIZE");
  limit(RLIMIT_CORE, "0", "0", "CORE");
  if (num(argv[8]) > 0) limit(RLIMIT_AS, argv[8], argv[8], "AS");
  if (uid >= 0) {
    if (setgroups(0, NULL) != 0) die("setgroups", "");
    if (setgid((gid_t)uid) != 0) die("setgid", argv[2]);
    if (setuid((uid_t)uid) != 0) die("setuid", argv[2]);
  }
  execvp(argv[at + 1], argv + at + 1);
  die("exec", argv[at + 1]);
  return 127;
}
