// PR_SET_DUMPABLE for the daemons: prctl is variadic, hidden from Swift.
#include <sys/prctl.h>

#include "CCrispSys.h"

int crisp_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0); }

int crisp_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }
