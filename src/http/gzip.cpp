#include "http/gzip.hpp"

#include <zlib.h>

#include <eventlog/core/error.hpp>
#include <eventlog/http/server.hpp>
#include <memory>

namespace eventlog::http::detail {
namespace {

struct InflateStream {
    z_stream zs{};
    InflateStream() {
        if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) throw Error(ErrorKind::kFatal, "zlib: inflateInit2 failed");
    }
    ~InflateStream() { inflateEnd(&zs); }
    InflateStream(const InflateStream&) = delete;
    InflateStream& operator=(const InflateStream&) = delete;
};

[[noreturn]] void Refuse(int status, const char* error) {
    Problem p;
    p.status = status;
    p.error = error;
    throw ProblemError(p);
}

}  // namespace

std::string Gunzip(std::string_view compressed, std::size_t max_bytes) {
    InflateStream stream;
    stream.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
    stream.zs.avail_in = static_cast<uInt>(compressed.size());
    std::string out;
    char chunk[64 * 1024];
    for (;;) {
        stream.zs.next_out = reinterpret_cast<Bytef*>(chunk);
        stream.zs.avail_out = sizeof(chunk);
        const int rc = inflate(&stream.zs, Z_NO_FLUSH);
        const std::size_t produced = sizeof(chunk) - stream.zs.avail_out;
        if (out.size() + produced > max_bytes) Refuse(413, "request body too large once decompressed");
        out.append(chunk, produced);
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK) Refuse(400, "invalid gzip body");
        if (stream.zs.avail_in == 0 && produced == 0) Refuse(400, "invalid gzip body");
    }
    if (stream.zs.avail_in != 0) Refuse(400, "invalid gzip body");
    return out;
}

std::string Gzip(std::string_view data) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        throw Error(ErrorKind::kFatal, "zlib: deflateInit2 failed");
    }
    std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&zs, Z_FINISH);
    out.resize(out.size() - zs.avail_out);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) throw Error(ErrorKind::kFatal, "zlib: deflate failed");
    return out;
}

}  // namespace eventlog::http::detail
