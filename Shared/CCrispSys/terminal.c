// ioctl is variadic, so Swift cannot call it.
#include "CCrispSys.h"

#include <sys/ioctl.h>
#include <termios.h>

int crisp_set_window_size(int fd, unsigned short columns, unsigned short rows) {
  struct winsize size = {.ws_row = rows, .ws_col = columns};
  return ioctl(fd, TIOCSWINSZ, &size);
}

int crisp_get_window_size(int fd, unsigned short *columns, unsigned short *rows) {
  struct winsize size;
  if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
  *columns = size.ws_col;
  *rows = size.ws_row;
  return 0;
}
