// zlib (Debian zlib1g-dev) for SPDY/3 header-block compression in the streaming server.
// deflateInit/inflateInit are macros that Swift cannot call: small inline wrappers.
#ifndef CRISP_CZLIB_SHIM_H
#define CRISP_CZLIB_SHIM_H

#include <zlib.h>

static inline int crisp_deflate_init(z_stream *stream, int level) {
  stream->zalloc = Z_NULL;
  stream->zfree = Z_NULL;
  stream->opaque = Z_NULL;
  return deflateInit(stream, level);
}

static inline int crisp_inflate_init(z_stream *stream) {
  stream->zalloc = Z_NULL;
  stream->zfree = Z_NULL;
  stream->opaque = Z_NULL;
  stream->next_in = Z_NULL;
  stream->avail_in = 0;
  return inflateInit(stream);
}

#endif
