#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace eventlog::log {

/// Severity, lowest first.
enum class Level { kDebug, kInfo, kWarning, kError };

/// A field value in a structured log line.
using Value = std::variant<std::string, std::int64_t, double, bool>;
/// Key/value pairs appended to a log line, in order.
using Fields = std::vector<std::pair<std::string, Value>>;

/// Sets the minimum level written ("debug", "info", "warning", "error"). Thread-safe.
void SetLevel(std::string_view level);
/// Writes one JSON object per line to stderr: {"timestamp","level","event",...fields}. Thread-safe;
/// each line is written with a single write(2) so lines from several threads never interleave.
void Write(Level level, std::string_view event, const Fields& fields = {});

/// Shorthands for Write().
inline void Debug(std::string_view event, const Fields& fields = {}) { Write(Level::kDebug, event, fields); }
inline void Info(std::string_view event, const Fields& fields = {}) { Write(Level::kInfo, event, fields); }
inline void Warning(std::string_view event, const Fields& fields = {}) { Write(Level::kWarning, event, fields); }
inline void Error(std::string_view event, const Fields& fields = {}) { Write(Level::kError, event, fields); }

}  // namespace eventlog::log
