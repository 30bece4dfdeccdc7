/* aletheia-supervisor: runs inside one sandbox (bwrap) for all tests of one submission and
 * forks a fresh process per test, so a submission pays for one sandbox set-up instead of one per
 * test. Host side: aletheia_ray/sandbox/session.py.
 *
 * usage: aletheia-supervisor SOCK_FD SCRATCH_DIR...
 * Protocol over a SOCK_SEQPACKET socket inherited as SOCK_FD (one message per datagram):
 *   -> "READY"                                once, at start
 *   <- "RUN\0argv0\0argv1..." + 3 fds (stdin, stdout, stderr of the test) as SCM_RIGHTS
 *   -> "EXIT <wait status> <user us> <sys us> <maxrss KiB> <clean 0|1>"
 *   -> "FAIL <why>"                           the test could not be started (infrastructure)
 * After every test, everything else left in the pid namespace (daemons, stray children) is
 * killed and reaped, the scratch dirs are emptied and SysV IPC objects removed, so the next test
 * starts fresh. The
 * supervisor is non-dumpable: a test (same uid) cannot read its memory or fds; it can only kill
 * it, which the host sees as the socket closing and charges to that test.
 * A closed socket (host gone or session closed) ends the supervisor and so the sandbox. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 256
#define MAX_MSG 65536

static int sock = -1;

static void reply(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n >= (int)sizeof buf) n = sizeof buf - 1;
  if (send(sock, buf, (size_t)n, MSG_NOSIGNAL) < 0) _exit(3);  /* host gone */
}

/* SIGKILL every process of the namespace except pid 1 (bwrap's init) and us; returns how many
 * were still there (zombies included). */
static int kill_others(void) {
  DIR *d = opendir("/proc");
  if (!d) return -1;
  pid_t me = getpid();
  int left = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 1 || pid == me) continue;
    kill((pid_t)pid, SIGKILL);
    ++left;
  }
  closedir(d);
  return left;
}

static void reap_all(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

/* Kill and reap everything but us; 0 when the namespace is empty within ~5 s. */
static int clear_namespace(void) {
  for (int i = 0; i < 5000; ++i) {
    int left = kill_others();
    reap_all();
    if (left == 0) return 0;
    if (left < 0) return -1;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

/* Remove the SysV IPC objects a test created (the ipc namespace is the sandbox's own, so all of
 * them are); 0 when all are gone. */
static int clear_sysv_ipc(void) {
  static const char *tables[3] = {"/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"};
  int bad = 0;
  for (int t = 0; t < 3; ++t) {
    FILE *f = fopen(tables[t], "r");
    if (!f) continue;
    char line[512];
    if (!fgets(line, sizeof line, f)) { fclose(f); continue; }  /* header */
    while (fgets(line, sizeof line, f)) {
      long key, id;
      if (sscanf(line, "%ld %ld", &key, &id) != 2) continue;
      int rc = t == 0 ? shmctl((int)id, IPC_RMID, NULL)
             : t == 1 ? msgctl((int)id, IPC_RMID, NULL) : semctl((int)id, 0, IPC_RMID);
      if (rc != 0) bad = 1;
    }
    fclose(f);
  }
  return bad;
}

/* Remove everything below path (not path itself); files belong to our uid, so fix modes first. */
static int empty_dir(const char *path) {
  int bad = 0;
  chmod(path, 0700);
  DIR *d = opendir(path);
  if (!d) return errno == ENOENT ? 0 : 1;
  struct dirent *e;
  char child[4096];
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) {
      bad = 1;
      continue;
    }
    struct stat st;
    if (lstat(child, &st) != 0) { bad = 1; continue; }
    if (S_ISDIR(st.st_mode)) {
      bad |= empty_dir(child);
      if (rmdir(child) != 0) bad = 1;
    } else if (unlink(child) != 0) {
      bad = 1;
    }
  }
  closedir(d);
  return bad;
}

static void run_test(char *msg, ssize_t len, int fds[3], char **scratch, int nscratch) {
  char *args[MAX_ARGS + 1];
  int argc = 0;
  for (char *p = msg + 4; p < msg + len && argc < MAX_ARGS; p += strlen(p) + 1) args[argc++] = p;
  args[argc] = NULL;
  if (argc == 0) { reply("FAIL empty command"); return; }
  int errpipe[2];
  if (pipe2(errpipe, O_CLOEXEC) != 0) { reply("FAIL pipe: %s", strerror(errno)); return; }
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0) _exit(127);
    if (syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) != 0) {
      for (int fd = 3; fd < 1024; ++fd)
        if (fd != errpipe[1]) close(fd);
    }
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(args[0], args);
    int err = errno;
    ssize_t w = write(errpipe[1], &err, sizeof err);
    (void)w;
    _exit(127);
  }
  int fork_errno = errno;
  close(fds[0]);
  close(fds[1]);
  close(fds[2]);
  close(errpipe[1]);
  if (pid < 0) {
    close(errpipe[0]);
    reply("FAIL fork: %s", strerror(fork_errno));
    return;
  }
  int exec_errno = 0;
  ssize_t got = read(errpipe[0], &exec_errno, sizeof exec_errno);
  close(errpipe[0]);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  for (;;) {  /* orphans adopted by us (subreaper) are reaped on the way */
    pid_t w = wait4(-1, &status, 0, &ru);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) { status = -1; break; }
  }
  int clean = clear_namespace() == 0;
  for (int i = 0; i < nscratch; ++i) clean &= empty_dir(scratch[i]) == 0;
  clean &= clear_sysv_ipc() == 0;
  if (got == (ssize_t)sizeof exec_errno) {
    reply("FAIL exec %s: %s", args[0], strerror(exec_errno));
    return;
  }
  long user_us = ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec;
  long sys_us = ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec;
  reply("EXIT %d %ld %ld %ld %d", status, user_us, sys_us, ru.ru_maxrss, clean);
  if (!clean) _exit(4);  /* the host starts a fresh sandbox for the next test */
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  sock = atoi(argv[1]);
  if (fcntl(sock, F_SETFD, FD_CLOEXEC) != 0) return 2;
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  static char msg[MAX_MSG + 1];
  union {
    char buf[CMSG_SPACE(3 * sizeof(int))];
    struct cmsghdr align;
  } control;
  reply("READY");
  for (;;) {
    struct iovec iov = {msg, MAX_MSG};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof control.buf;
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    msg[n] = 0;
    int fds[3] = {-1, -1, -1}, nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(fds, CMSG_DATA(c), (nfds > 3 ? 3 : nfds) * sizeof(int));
      }
    }
    if (n < 4 || memcmp(msg, "RUN", 4) != 0 || nfds != 3 || (mh.msg_flags & MSG_CTRUNC)) {
      for (int i = 0; i < 3 && i < nfds; ++i) close(fds[i]);
      reply("FAIL bad request");
      continue;
    }
    run_test(msg, n, fds, argv + 2, argc - 2);
  }
  clear_namespace();
  return 0;
}
