#include "http/input.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/http/server.hpp>

#include "http/json_reader.hpp"

namespace eventlog::http::detail {
namespace {

[[noreturn]] void Refuse(int status, std::string error, std::string field, std::optional<std::size_t> index) {
    Problem p;
    p.status = status;
    p.error = std::move(error);
    p.field = std::move(field);
    p.index = index;
    throw ProblemError(p);
}

[[noreturn]] void Malformed(const JsonSyntaxError& e, std::optional<std::size_t> index) {
    Problem p;
    p.status = 400;
    p.error = std::string("malformed JSON: ") + e.what();
    p.offset = e.Offset();
    p.index = index;
    throw ProblemError(p);
}

/// A client's key as echoed in an error: at most 64 bytes, cut at a UTF-8 character boundary.
std::string EchoedKey(const std::string& key) {
    constexpr std::size_t kMax = 64;
    if (key.size() <= kMax) return key;
    std::size_t end = kMax;
    while (end > 0 && (static_cast<unsigned char>(key[end]) & 0xC0) == 0x80) --end;
    return key.substr(0, end) + "...";
}

/// A string field: refuses other types, NUL bytes (PostgreSQL text cannot hold them) and more than `max_bytes`.
std::string ReadStringField(JsonReader& reader, const std::string& field, std::size_t max_bytes,
                            std::optional<std::size_t> index) {
    reader.SkipWhitespace();
    if (reader.Peek() != '"') Refuse(400, "expected a string", field, index);
    std::string value = reader.ReadString();
    if (value.find('\0') != std::string::npos) Refuse(400, "must not contain NUL characters", field, index);
    if (value.size() > max_bytes) {
        Refuse(400, "longer than " + std::to_string(max_bytes) + " bytes", field, index);
    }
    return value;
}

/// True when the next value is `null` (consumed).
bool ConsumeNull(JsonReader& reader) {
    reader.SkipWhitespace();
    if (reader.Peek() != 'n') return false;
    reader.SkipValue();
    return true;
}

IncomingEvent ReadEvent(JsonReader& reader, std::size_t index, const EventLimits& limits) {
    reader.SkipWhitespace();
    if (reader.Peek() != '{') {
        reader.SkipValue();  // a syntax error inside wins over the type error
        Refuse(400, "expected a JSON object", "", index);
    }
    reader.Expect('{', "'{'");
    IncomingEvent event;
    bool has_type = false;
    bool has_context = false;
    std::vector<std::string> seen;
    reader.SkipWhitespace();
    if (!reader.Consume('}')) {
        for (;;) {
            reader.SkipWhitespace();
            const std::string key = reader.ReadString();
            reader.SkipWhitespace();
            reader.Expect(':', "':' after an object key");
            if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
                Refuse(400, "duplicate field", EchoedKey(key), index);
            }
            seen.push_back(key);
            if (key == "event_type") {
                event.event_type = ReadStringField(reader, key, limits.max_event_type_bytes, index);
                if (std::all_of(event.event_type.begin(), event.event_type.end(),
                                [](unsigned char c) { return std::isspace(c); })) {
                    Refuse(400, "expected a non-empty event name", key, index);
                }
                has_type = true;
            } else if (key == "event_context") {
                std::string_view span;
                reader.SkipWhitespace();
                const JsonType type = reader.SkipValue(&span);
                if (type != JsonType::kObject) Refuse(400, "expected a JSON object", key, index);
                if (span.size() > limits.max_context_bytes) {
                    Refuse(413, "larger than " + std::to_string(limits.max_context_bytes) + " bytes", key, index);
                }
                event.event_context = MinifyTrustedJson(span);
                has_context = true;
            } else if (key == "event_id") {
                if (!ConsumeNull(reader)) {
                    const auto id = Uuid::Parse(ReadStringField(reader, key, 64, index));
                    if (!id) Refuse(400, "expected a UUID", key, index);
                    event.event_id = id->ToString();
                }
            } else if (key == "event_date_time") {
                if (!ConsumeNull(reader)) {
                    std::string text = ReadStringField(reader, key, 64, index);
                    const auto micros = ParseRfc3339(text);
                    if (!micros) Refuse(400, "expected an RFC 3339 date-time", key, index);
                    if (*micros < kMinEventTimeMicros || *micros > kMaxEventTimeMicros) {
                        Refuse(400, kEventTimeRule, key, index);
                    }
                    event.event_date_time = std::move(text);
                }
            } else if (key == "environment") {
                if (!ConsumeNull(reader))
                    event.environment = ReadStringField(reader, key, limits.max_environment_bytes, index);
            } else if (key == "trace_id") {
                if (!ConsumeNull(reader))
                    event.trace_id = ReadStringField(reader, key, limits.max_trace_id_bytes, index);
            } else if (key == "metadata_version") {
                if (!ConsumeNull(reader)) {
                    std::string_view span;
                    reader.SkipWhitespace();
                    const JsonType type = reader.SkipValue(&span);
                    std::int64_t value = 0;
                    const auto [end, ec] = std::from_chars(span.data(), span.data() + span.size(), value);
                    if (type != JsonType::kNumber || ec != std::errc() || end != span.data() + span.size() ||
                        value < 0) {
                        Refuse(400, "expected a non-negative integer", key, index);
                    }
                    event.metadata_version = value;
                }
            } else {
                Refuse(400, "unknown field", EchoedKey(key), index);
            }
            reader.SkipWhitespace();
            if (reader.Consume('}')) break;
            reader.Expect(',', "',' or '}' in an object");
        }
    }
    if (!has_type) Refuse(400, "required", "event_type", index);
    if (!has_context) Refuse(400, "required", "event_context", index);
    return event;
}

bool Digits(std::string_view text, std::size_t at, std::size_t count, int* value) {
    if (at + count > text.size()) return false;
    int v = 0;
    for (std::size_t i = at; i < at + count; ++i) {
        if (text[i] < '0' || text[i] > '9') return false;
        v = v * 10 + (text[i] - '0');
    }
    *value = v;
    return true;
}

}  // namespace

std::optional<std::int64_t> ParseRfc3339(std::string_view t) {
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!Digits(t, 0, 4, &year) || t.size() < 20 || t[4] != '-' || !Digits(t, 5, 2, &month) || t[7] != '-' ||
        !Digits(t, 8, 2, &day) || (t[10] != 'T' && t[10] != 't' && t[10] != ' ') || !Digits(t, 11, 2, &hour) ||
        t[13] != ':' || !Digits(t, 14, 2, &minute) || t[16] != ':' || !Digits(t, 17, 2, &second)) {
        return std::nullopt;
    }
    static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > kDays[month - 1] || hour > 23 || minute > 59 ||
        second > 59) {
        return std::nullopt;
    }
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 2 && day == 29 && !leap) return std::nullopt;
    std::size_t pos = 19;
    std::int64_t micros = 0;
    if (t[pos] == '.') {
        const std::size_t start = ++pos;
        std::int64_t scale = 100'000;
        bool round_up = false;
        while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9') {
            if (scale > 0) {
                micros += (t[pos] - '0') * scale;
            } else if (pos - start == 6) {
                round_up = t[pos] >= '5';  // to the microsecond, as PostgreSQL stores it
            }
            scale /= 10;
            ++pos;
        }
        if (pos == start || pos - start > 9) return std::nullopt;
        if (round_up) ++micros;
    }
    if (pos == t.size()) return std::nullopt;
    std::int64_t offset_seconds = 0;
    if (t[pos] == 'Z' || t[pos] == 'z') {
        if (pos + 1 != t.size()) return std::nullopt;
    } else {
        int offset_hour = 0, offset_minute = 0;
        if ((t[pos] != '+' && t[pos] != '-') || pos + 6 != t.size() || !Digits(t, pos + 1, 2, &offset_hour) ||
            t[pos + 3] != ':' || !Digits(t, pos + 4, 2, &offset_minute) || offset_hour > 23 || offset_minute > 59) {
            return std::nullopt;
        }
        offset_seconds =
            (std::int64_t{offset_hour} * 3600 + std::int64_t{offset_minute} * 60) * (t[pos] == '+' ? 1 : -1);
    }
    const std::int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
    const std::int64_t seconds =
        days * 86'400 + std::int64_t{hour} * 3600 + std::int64_t{minute} * 60 + second - offset_seconds;
    return seconds * 1'000'000 + micros;
}

bool IsRfc3339(std::string_view text) { return ParseRfc3339(text).has_value(); }

std::vector<IncomingEvent> ParseEvents(std::string_view body, BodyFormat format, const EventLimits& limits) {
    std::vector<IncomingEvent> events;
    JsonReader reader(body);
    const auto add = [&](IncomingEvent event) {
        if (events.size() >= limits.max_events) {
            Refuse(413, "more than " + std::to_string(limits.max_events) + " events in one request", "", std::nullopt);
        }
        events.push_back(std::move(event));
    };
    std::optional<std::size_t> index;
    try {
        if (format == BodyFormat::kNdjson) {
            for (;;) {
                reader.SkipWhitespace();
                if (reader.AtEnd()) break;
                index = events.size();
                add(ReadEvent(reader, *index, limits));
                reader.SkipLineSpace();
                if (!reader.AtEnd() && !reader.Consume('\n')) reader.Fail("expected a line feed after an event");
            }
        } else {
            reader.SkipWhitespace();
            if (reader.Peek() == '[') {
                reader.Expect('[', "'['");
                reader.SkipWhitespace();
                if (!reader.Consume(']')) {
                    for (;;) {
                        index = events.size();
                        add(ReadEvent(reader, *index, limits));
                        reader.SkipWhitespace();
                        if (reader.Consume(']')) break;
                        reader.Expect(',', "',' or ']' in an array");
                    }
                }
            } else if (reader.Peek() == '{') {
                index = 0;
                add(ReadEvent(reader, 0, limits));
            } else {
                reader.SkipValue();
                Refuse(400, "expected a JSON object or an array of objects", "", std::nullopt);
            }
            index.reset();
            reader.SkipWhitespace();
            if (!reader.AtEnd()) reader.Fail("unexpected data after the JSON value");
        }
    } catch (const JsonSyntaxError& e) {
        Malformed(e, index);
    }
    if (events.empty()) Refuse(400, "no events in the request", "", std::nullopt);
    return events;
}

namespace {

/// `text` with %XX escapes and '+' decoded; nullopt for a broken escape.
std::optional<std::string> PercentDecoded(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '+') {
            out.push_back(' ');
        } else if (text[i] == '%') {
            unsigned value = 0;
            if (i + 2 >= text.size()) return std::nullopt;
            const auto [end, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
            if (ec != std::errc() || end != text.data() + i + 3) return std::nullopt;
            out.push_back(static_cast<char>(value));
            i += 2;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

/// A duration "<digits>ms" or "<digits>s"; nullopt otherwise (or beyond kMaxWaitTimeout).
std::optional<std::chrono::milliseconds> ParseTimeout(std::string_view text) {
    std::size_t digits = 0;
    while (digits < text.size() && digits < 9 && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
    if (digits == 0) return std::nullopt;
    std::int64_t value = 0;
    std::from_chars(text.data(), text.data() + digits, value);
    const std::string_view unit = text.substr(digits);
    std::chrono::milliseconds timeout{};
    if (unit == "ms") {
        timeout = std::chrono::milliseconds(value);
    } else if (unit == "s") {
        timeout = std::chrono::seconds(value);
    } else {
        return std::nullopt;
    }
    if (timeout > kMaxWaitTimeout) return std::nullopt;
    return timeout;
}

}  // namespace

WaitRequest ParseEventsQuery(std::string_view query) {
    WaitRequest wait;
    bool has_wait = false;
    bool has_timeout = false;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) continue;
        const auto eq = pair.find('=');
        const auto name = PercentDecoded(pair.substr(0, eq));
        const auto value = PercentDecoded(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
        if (!name || !value) Refuse(400, "malformed query string (a broken %-escape)", "", std::nullopt);
        if (*name == "wait") {
            if (has_wait) Refuse(400, "repeated query parameter", "wait", std::nullopt);
            has_wait = true;
            if (*value != "visible") Refuse(400, "expected wait=visible", "wait", std::nullopt);
            wait.visible = true;
        } else if (*name == "timeout") {
            if (has_timeout) Refuse(400, "repeated query parameter", "timeout", std::nullopt);
            has_timeout = true;
            const auto timeout = ParseTimeout(*value);
            if (!timeout) {
                Refuse(400,
                       "expected a duration with its unit, ms or s (e.g. 500ms or 5s), at most " +
                           std::to_string(kMaxWaitTimeout.count() / 1000) + " s",
                       "timeout", std::nullopt);
            }
            wait.timeout = *timeout;
        } else {
            Refuse(400, "unknown query parameter", EchoedKey(*name), std::nullopt);
        }
    }
    if (has_timeout && !has_wait) Refuse(400, "timeout applies only with wait=visible", "timeout", std::nullopt);
    return wait;
}

IncomingUser ParseUser(std::string_view body) {
    JsonReader reader(body);
    IncomingUser user;
    bool has_email = false;
    try {
        reader.SkipWhitespace();
        if (reader.Peek() != '{') {
            reader.SkipValue();
            Refuse(400, "expected a JSON object", "", std::nullopt);
        }
        reader.Expect('{', "'{'");
        std::vector<std::string> seen;
        reader.SkipWhitespace();
        if (!reader.Consume('}')) {
            for (;;) {
                reader.SkipWhitespace();
                const std::string key = reader.ReadString();
                reader.SkipWhitespace();
                reader.Expect(':', "':' after an object key");
                if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
                    Refuse(400, "duplicate field", EchoedKey(key), std::nullopt);
                }
                seen.push_back(key);
                if (key == "email") {
                    user.email = ReadStringField(reader, key, 254, std::nullopt);
                    has_email = true;
                } else if (key == "first_name") {
                    user.first_name = ReadStringField(reader, key, 150, std::nullopt);
                } else if (key == "last_name") {
                    user.last_name = ReadStringField(reader, key, 150, std::nullopt);
                } else {
                    Refuse(400, "unknown field", EchoedKey(key), std::nullopt);
                }
                reader.SkipWhitespace();
                if (reader.Consume('}')) break;
                reader.Expect(',', "',' or '}' in an object");
            }
        }
        reader.SkipWhitespace();
        if (!reader.AtEnd()) reader.Fail("unexpected data after the JSON value");
    } catch (const JsonSyntaxError& e) {
        Malformed(e, std::nullopt);
    }
    if (!has_email) Refuse(400, "required", "email", std::nullopt);
    // One '@', something on both sides, no spaces or control characters; the domain is case-insensitive.
    const auto at = user.email.find('@');
    const bool bad_char =
        std::any_of(user.email.begin(), user.email.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7F; });
    if (at == std::string::npos || at == 0 || at + 1 == user.email.size() ||
        user.email.find('@', at + 1) != std::string::npos || bad_char) {
        Refuse(400, "expected an email address", "email", std::nullopt);
    }
    std::transform(user.email.begin() + static_cast<std::ptrdiff_t>(at), user.email.end(),
                   user.email.begin() + static_cast<std::ptrdiff_t>(at),
                   [](unsigned char c) { return std::tolower(c); });
    return user;
}

}  // namespace eventlog::http::detail
