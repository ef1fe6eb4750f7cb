/* pause: the infra process of a pod sandbox, for runtimes that run one
 * (containerd's sandbox_image). Sleeps until SIGINT or SIGTERM and reaps
 * the children a shared PID namespace gives it. Built static by
 * build-images.sh. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction down = {0}, child = {0};
    down.sa_handler = quit;
    sigaction(SIGINT, &down, NULL);
    sigaction(SIGTERM, &down, NULL);
    child.sa_handler = reap;
    child.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &child, NULL);
    for (;;)
        pause();
}
