/* nonewprivs: installed setuid root in the nonewprivs test image; prints
 * its effective uid, which stays the caller's when no_new_privs is set.
 * (busybox cannot stand in: its setuid handling drops the privilege.)
 * Built static by build-images.sh. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
