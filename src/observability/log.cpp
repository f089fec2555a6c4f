#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/text.hpp>
#include <eventlog/observability/log.hpp>
#include <optional>

namespace eventlog::log {
namespace {

std::atomic<int> g_min_level{static_cast<int>(Level::kInfo)};

thread_local Fields t_context;

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

/// Console level column: upper case, padded to one width.
const char* ConsoleName(Level level) {
    switch (level) {
        case Level::kDebug:
            return "DEBUG";
        case Level::kInfo:
            return "INFO ";
        case Level::kWarning:
            return "WARN ";
        case Level::kError:
            return "ERROR";
    }
    return "INFO ";
}

std::optional<Format> ParseFormat(std::string_view text) {
    std::string lower(text);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "json") return Format::kJson;
    if (lower == "console") return Format::kConsole;
    return std::nullopt;
}

int InitialFormat() {
    const char* env = std::getenv("LOG_FORMAT");  // NOLINT(concurrency-mt-unsafe): read once, at start-up
    const auto format = env == nullptr ? std::nullopt : ParseFormat(env);
    return static_cast<int>(format.value_or(Format::kJson));
}

std::atomic<int> g_format{InitialFormat()};

void AppendJsonValue(std::string& line, const Value& value) {
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

void AppendConsoleValue(std::string& line, const Value& value) {
    const auto* s = std::get_if<std::string>(&value);
    if (s == nullptr) {
        AppendJsonValue(line, value);
        return;
    }
    const bool plain = !s->empty() && std::all_of(s->begin(), s->end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7F && c != '"' && c != '=' && c != '\\';
    });
    if (plain) {
        line += *s;
        return;
    }
    // Quoted with JSON's escapes (so the text is unambiguous), then made safe for a terminal.
    std::string quoted;
    AppendJsonString(quoted, *s);
    line += SafeJsonForTerminal(quoted);
}

bool Overridden(const Fields& fields, const std::string& key) {
    return std::any_of(fields.begin(), fields.end(), [&key](const auto& f) { return f.first == key; });
}

/// True when a later context field has the same key (the inner scope wins).
bool ShadowedLater(std::size_t index) {
    for (std::size_t j = index + 1; j < t_context.size(); ++j) {
        if (t_context[j].first == t_context[index].first) return true;
    }
    return false;
}

}  // namespace

void SetLevel(std::string_view level) {
    Level l = Level::kInfo;
    if (level == "debug") l = Level::kDebug;
    if (level == "warning") l = Level::kWarning;
    if (level == "error") l = Level::kError;
    g_min_level.store(static_cast<int>(l));
}

bool SetFormat(std::string_view format) {
    const auto parsed = ParseFormat(format);
    if (!parsed) return false;
    g_format.store(static_cast<int>(*parsed));
    return true;
}

Format CurrentFormat() noexcept { return static_cast<Format>(g_format.load(std::memory_order_relaxed)); }

ScopedContext::ScopedContext(Fields fields) : previous_size_(t_context.size()) {
    for (auto& f : fields) t_context.push_back(std::move(f));
}

ScopedContext::~ScopedContext() { t_context.resize(previous_size_); }

const Fields& CurrentContext() noexcept { return t_context; }

bool Enabled(Level level) noexcept { return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed); }

void Write(Level level, std::string_view event, const Fields& fields) {
    if (!Enabled(level)) return;
    const bool console = CurrentFormat() == Format::kConsole;
    std::string ts = FormatTimestamp(NowMicros());
    ts[10] = 'T';
    ts += 'Z';
    std::string line;
    if (console) {
        line = ts;
        line.push_back(' ');
        line += ConsoleName(level);
        line.push_back(' ');
        line += SafeForTerminal(event);
    } else {
        line = "{\"timestamp\":";
        AppendJsonString(line, ts);
        line += ",\"level\":\"";
        line += Name(level);
        line += "\",\"event\":";
        AppendJsonString(line, event);
    }
    const auto append = [&line, console](const std::string& key, const Value& value) {
        if (console) {
            line.push_back(' ');
            line += SafeForTerminal(key);
            line.push_back('=');
            AppendConsoleValue(line, value);
        } else {
            line.push_back(',');
            AppendJsonString(line, key);
            line.push_back(':');
            AppendJsonValue(line, value);
        }
    };
    for (std::size_t i = 0; i < t_context.size(); ++i) {
        if (ShadowedLater(i) || Overridden(fields, t_context[i].first)) continue;
        append(t_context[i].first, t_context[i].second);
    }
    for (const auto& [key, value] : fields) append(key, value);
    // JSON lines must be UTF-8: a byte that is not (a payload's, a server's message) becomes U+FFFD, the rest stays
    // equal JSON (the console form escapes its strings itself).
    // Only a line with a non-ASCII byte needs the pass (the access log writes one line per request).
    if (!console &&
        std::any_of(line.begin(), line.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })) {
        line = SafeJsonForTerminal(line);
    }
    line += console ? "\n" : "}\n";
    std::size_t off = 0;
    while (off < line.size()) {
        const ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
        if (n <= 0) break;
        off += static_cast<std::size_t>(n);
    }
}

}  // namespace eventlog::log
