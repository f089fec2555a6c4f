#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/observability/log.hpp>

namespace eventlog::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};

const char* Name(Level level) {
    switch (level) {
        case Level::kDebug:
            return "debug";
        case Level::kInfo:
            return "info";
        case Level::kWarning:
            return "warning";
        case Level::kError:
            return "error";
    }
    return "info";
}

}  // namespace

void SetLevel(std::string_view level) {
    Level l = Level::kInfo;
    if (level == "debug") l = Level::kDebug;
    if (level == "warning") l = Level::kWarning;
    if (level == "error") l = Level::kError;
    g_min_level.store(static_cast<int>(l));
}

void Write(Level level, std::string_view event, const Fields& fields) {
    if (static_cast<int>(level) < g_min_level.load(std::memory_order_relaxed)) return;
    std::string line = "{\"timestamp\":";
    std::string ts = FormatTimestamp(NowMicros());
    ts[10] = 'T';
    AppendJsonString(line, ts + "Z");
    line += ",\"level\":\"";
    line += Name(level);
    line += "\",\"event\":";
    AppendJsonString(line, event);
    for (const auto& [key, value] : fields) {
        line.push_back(',');
        AppendJsonString(line, key);
        line.push_back(':');
        if (const auto* s = std::get_if<std::string>(&value)) {
            AppendJsonString(line, *s);
        } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
            line += std::to_string(*i);
        } else if (const auto* d = std::get_if<double>(&value)) {
            line += fmt::format("{:.6g}", *d);
        } else {
            line += std::get<bool>(value) ? "true" : "false";
        }
    }
    line += "}\n";
    std::size_t off = 0;
    while (off < line.size()) {
        const ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
    }
}

}  // namespace eventlog::log
