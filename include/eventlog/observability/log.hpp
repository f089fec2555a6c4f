#pragma once

#include <cstddef>
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

/// Whether a line of `level` would be written (to skip building its fields).
bool Enabled(Level level) noexcept;

/// Line format: JSON objects (the default) or a readable console form.
enum class Format { kJson, kConsole };
/// Sets the format from LOG_FORMAT's value: "json" or "console" (case-insensitive). Returns false, leaving the
/// format unchanged, for any other value. Thread-safe. Before any call the format is taken from the process
/// environment's LOG_FORMAT (JSON when unset or unknown).
bool SetFormat(std::string_view format);
/// The format in force.
Format CurrentFormat() noexcept;

/// Writes one line to stderr. JSON: {"timestamp","level","event",...context,...fields}. Console:
/// `2026-11-27T10:00:00.123456Z INFO  event key=value key="a b"` with control characters escaped. The context
/// fields of this thread's ScopedContexts come first; a field with the same key as a context field replaces it.
/// Thread-safe; each line is written with a single write(2) so lines from several threads never interleave.
void Write(Level level, std::string_view event, const Fields& fields = {});

/// Adds fields (trace_id, span_id, batch_id, ...) to every line the current thread writes while it lives.
/// Scopes nest: an inner scope's fields follow the outer ones (and win on equal keys). Non-copyable,
/// non-movable; destroy it on the thread that created it, innermost first (a local variable does both).
class ScopedContext {
public:
    explicit ScopedContext(Fields fields);
    ~ScopedContext();
    ScopedContext(const ScopedContext&) = delete;
    ScopedContext& operator=(const ScopedContext&) = delete;

private:
    std::size_t previous_size_;
};

/// The context fields in force on the current thread, outermost first.
const Fields& CurrentContext() noexcept;

/// Shorthands for Write().
inline void Debug(std::string_view event, const Fields& fields = {}) { Write(Level::kDebug, event, fields); }
inline void Info(std::string_view event, const Fields& fields = {}) { Write(Level::kInfo, event, fields); }
inline void Warning(std::string_view event, const Fields& fields = {}) { Write(Level::kWarning, event, fields); }
inline void Error(std::string_view event, const Fields& fields = {}) { Write(Level::kError, event, fields); }

}  // namespace eventlog::log
