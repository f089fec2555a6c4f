#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace eventlog::http::detail {

/// Inflates a gzip body. Throws ProblemError 413 once the output would pass `max_bytes` (a gzip bomb stops there,
/// having allocated at most max_bytes), and 400 when the data is not one complete gzip stream.
std::string Gunzip(std::string_view compressed, std::size_t max_bytes);

/// Compresses `data` as gzip (for tests and clients).
std::string Gzip(std::string_view data);

}  // namespace eventlog::http::detail
