// libarchive (Debian libarchive-dev) and zlib (zlib1g-dev), used by imaged to read image
// layers, and the few declarations around them that Swift cannot import directly.
// zlib decompresses gzip layers itself: libarchive's gzip filter does not check the gzip
// CRC and size trailer ("XXX TODO" in 3.6.2), zlib's inflate does.
#ifndef CRISP_CARCHIVE_SHIM_H
#define CRISP_CARCHIVE_SHIM_H

#include <archive.h>
#include <archive_entry.h>
#include <locale.h>
#include <sys/xattr.h>
#include <zlib.h>

// libarchive's AE_IF* file types are cast macros, which Swift does not import.
enum {
  CRISP_AE_IFMT = AE_IFMT,
  CRISP_AE_IFREG = AE_IFREG,
  CRISP_AE_IFLNK = AE_IFLNK,
  CRISP_AE_IFSOCK = AE_IFSOCK,
  CRISP_AE_IFCHR = AE_IFCHR,
  CRISP_AE_IFBLK = AE_IFBLK,
  CRISP_AE_IFDIR = AE_IFDIR,
  CRISP_AE_IFIFO = AE_IFIFO,
};

// archive_set_error is variadic (printf-like); this sets a fixed message.
static inline void crisp_archive_set_error(struct archive *a, int error_number, const char *message) {
  archive_set_error(a, error_number, "%s", message);
}

// A UTF-8 LC_CTYPE locale (or NULL), to install on the unpacking thread with uselocale():
// libarchive converts pax names (UTF-8) to the thread's locale charset, and in the C
// locale every non-ASCII name fails to convert. LC_CTYPE_MASK is a macro Swift cannot see.
static inline locale_t crisp_archive_utf8_locale(void) {
  return newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

// inflateInit2 is a macro. Gzip members only (16 + window bits): inflate then checks
// each member's CRC-32 and length.
static inline int crisp_inflate_init_gzip(z_stream *stream) {
  stream->zalloc = Z_NULL;
  stream->zfree = Z_NULL;
  stream->opaque = Z_NULL;
  stream->next_in = Z_NULL;
  stream->avail_in = 0;
  return inflateInit2(stream, 16 + MAX_WBITS);
}

#endif
