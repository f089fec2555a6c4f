#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/tracing.hpp>
#include <eventlog/observability/version.hpp>
#include <observability/detail/http_post.hpp>
#include <random>

namespace eventlog::tracing {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr std::string_view kScopeName = "eventlog";

template <std::size_t N>
std::string Hex(const std::array<std::uint8_t, N>& bytes) {
    std::string out(N * 2, '0');
    for (std::size_t i = 0; i < N; ++i) {
        out[2 * i] = kHexDigits[bytes[i] >> 4];
        out[2 * i + 1] = kHexDigits[bytes[i] & 0x0F];
    }
    return out;
}

int LowerHexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

template <std::size_t N>
std::optional<std::array<std::uint8_t, N>> ParseHex(std::string_view hex) {
    if (hex.size() != N * 2) return std::nullopt;
    std::array<std::uint8_t, N> out{};
    bool any = false;
    for (std::size_t i = 0; i < N; ++i) {
        const int hi = LowerHexValue(hex[2 * i]);
        const int lo = LowerHexValue(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
        any = any || out[i] != 0;
    }
    if (!any) return std::nullopt;
    return out;
}

template <std::size_t N>
bool NonZero(const std::array<std::uint8_t, N>& bytes) {
    return std::any_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b != 0; });
}

template <std::size_t N>
std::array<std::uint8_t, N> RandomId() {
    thread_local std::mt19937_64 engine = [] {
        std::random_device device;
        std::seed_seq seed{device(), device(), device(), device(), device(), device(), device(), device()};
        return std::mt19937_64(seed);
    }();
    std::array<std::uint8_t, N> id{};
    do {
        for (std::size_t i = 0; i < N; i += 8) {
            const std::uint64_t word = engine();
            for (std::size_t k = 0; k < 8 && i + k < N; ++k) id[i + k] = static_cast<std::uint8_t>(word >> (8 * k));
        }
    } while (!NonZero(id));
    return id;
}

std::string Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

int AnyHexValue(char c) {
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return LowerHexValue(c);
}

std::optional<std::string> PercentDecode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size()) return std::nullopt;
        const int hi = AnyHexValue(s[i + 1]);
        const int lo = AnyHexValue(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

void AppendAnyValue(std::string& out, const AttributeValue& value) {
    if (const auto* s = std::get_if<std::string>(&value)) {
        out += "{\"stringValue\":";
        AppendJsonString(out, *s);
        out.push_back('}');
    } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
        fmt::format_to(std::back_inserter(out), "{{\"intValue\":\"{}\"}}", *i);
    } else if (const auto* d = std::get_if<double>(&value)) {
        // Protobuf's JSON mapping spells the non-finite doubles as strings.
        if (std::isnan(*d)) {
            out += "{\"doubleValue\":\"NaN\"}";
        } else if (std::isinf(*d)) {
            out += *d > 0 ? "{\"doubleValue\":\"Infinity\"}" : "{\"doubleValue\":\"-Infinity\"}";
        } else {
            fmt::format_to(std::back_inserter(out), "{{\"doubleValue\":{}}}", *d);
        }
    } else {
        out += std::get<bool>(value) ? "{\"boolValue\":true}" : "{\"boolValue\":false}";
    }
}

void AppendAttributes(std::string& out, const Attributes& attributes) {
    out += "\"attributes\":[";
    for (std::size_t i = 0; i < attributes.size(); ++i) {
        if (i > 0) out.push_back(',');
        out += "{\"key\":";
        AppendJsonString(out, attributes[i].first);
        out += ",\"value\":";
        AppendAnyValue(out, attributes[i].second);
        out.push_back('}');
    }
    out.push_back(']');
}

void AppendSpan(std::string& out, const Span& span) {
    out += "{\"traceId\":\"";
    out += ToHex(span.context.trace_id);
    out += "\",\"spanId\":\"";
    out += ToHex(span.context.span_id);
    out.push_back('"');
    if (NonZero(span.parent_span_id)) {
        out += ",\"parentSpanId\":\"";
        out += ToHex(span.parent_span_id);
        out.push_back('"');
    }
    // Span.flags (fixed32): the W3C trace flags in the low byte.
    if (span.context.flags != 0) fmt::format_to(std::back_inserter(out), ",\"flags\":{}", span.context.flags);
    out += ",\"name\":";
    AppendJsonString(out, span.name);
    fmt::format_to(std::back_inserter(out), ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\"",
                   static_cast<int>(span.kind), span.start_unix_nanos, span.end_unix_nanos);
    if (!span.attributes.empty()) {
        out.push_back(',');
        AppendAttributes(out, span.attributes);
    }
    if (!span.links.empty()) {
        out += ",\"links\":[";
        for (std::size_t i = 0; i < span.links.size(); ++i) {
            const SpanLink& link = span.links[i];
            if (i > 0) out.push_back(',');
            out += "{\"traceId\":\"";
            out += ToHex(link.context.trace_id);
            out += "\",\"spanId\":\"";
            out += ToHex(link.context.span_id);
            out.push_back('"');
            if (link.context.flags != 0) {
                fmt::format_to(std::back_inserter(out), ",\"flags\":{}", link.context.flags);
            }
            if (!link.attributes.empty()) {
                out.push_back(',');
                AppendAttributes(out, link.attributes);
            }
            out.push_back('}');
        }
        out.push_back(']');
    }
    if (span.dropped_links_count != 0) {
        fmt::format_to(std::back_inserter(out), ",\"droppedLinksCount\":{}", span.dropped_links_count);
    }
    if (span.status != StatusCode::kUnset) {
        fmt::format_to(std::back_inserter(out), ",\"status\":{{\"code\":{}", static_cast<int>(span.status));
        if (span.status == StatusCode::kError && !span.status_message.empty()) {
            out += ",\"message\":";
            AppendJsonString(out, span.status_message);
        }
        out.push_back('}');
    }
    out.push_back('}');
}

/// The first of `names` set (non-empty) in `env`, or "".
std::string FirstSet(const std::map<std::string, std::string>& env, std::initializer_list<const char*> names) {
    for (const char* name : names) {
        if (auto it = env.find(name); it != env.end() && !it->second.empty()) return it->second;
    }
    return {};
}

/// Number of partialSuccess.rejectedSpans in a collector's answer (0 when absent). The answer is JSON with the
/// count as a decimal string or number; a small scan suffices for this one field.
std::uint64_t RejectedSpans(std::string_view body) {
    const auto key = body.find("\"rejectedSpans\"");
    if (key == std::string_view::npos) return 0;
    std::size_t i = body.find(':', key);
    if (i == std::string_view::npos) return 0;
    ++i;
    while (i < body.size() && (body[i] == ' ' || body[i] == '"')) ++i;
    std::uint64_t value = 0;
    std::from_chars(body.data() + i, body.data() + body.size(), value);
    return value;
}

}  // namespace

std::string ToHex(const TraceId& id) { return Hex(id); }
std::string ToHex(const SpanId& id) { return Hex(id); }
std::optional<TraceId> ParseTraceId(std::string_view hex) { return ParseHex<16>(hex); }
std::optional<SpanId> ParseSpanId(std::string_view hex) { return ParseHex<8>(hex); }
TraceId NewTraceId() { return RandomId<16>(); }
SpanId NewSpanId() { return RandomId<8>(); }

bool SpanContext::IsValid() const noexcept { return NonZero(trace_id) && NonZero(span_id); }

std::optional<SpanContext> ParseTraceparent(std::string_view header) {
    // version "-" trace-id "-" parent-id "-" trace-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
    constexpr std::size_t kLength = 55;
    if (header.size() < kLength) return std::nullopt;
    const int v_hi = LowerHexValue(header[0]);
    const int v_lo = LowerHexValue(header[1]);
    if (v_hi < 0 || v_lo < 0) return std::nullopt;
    const int version = v_hi * 16 + v_lo;
    if (version == 0xFF) return std::nullopt;
    if (version == 0 && header.size() != kLength) return std::nullopt;
    // A future version may append fields, always after a '-'.
    if (version > 0 && header.size() > kLength && header[kLength] != '-') return std::nullopt;
    if (header[2] != '-' || header[35] != '-' || header[52] != '-') return std::nullopt;
    const auto trace_id = ParseHex<16>(header.substr(3, 32));
    const auto span_id = ParseHex<8>(header.substr(36, 16));
    const int f_hi = LowerHexValue(header[53]);
    const int f_lo = LowerHexValue(header[54]);
    if (!trace_id || !span_id || f_hi < 0 || f_lo < 0) return std::nullopt;
    return SpanContext{*trace_id, *span_id, static_cast<std::uint8_t>(f_hi * 16 + f_lo)};
}

std::string FormatTraceparent(const SpanContext& context) {
    std::string out = "00-" + ToHex(context.trace_id) + "-" + ToHex(context.span_id) + "-";
    out.push_back(kHexDigits[context.flags >> 4]);
    out.push_back(kHexDigits[context.flags & 0x0F]);
    return out;
}

std::int64_t NowUnixNanos() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void Span::End() { end_unix_nanos = NowUnixNanos(); }

Span StartSpan(std::string name, SpanKind kind, const std::optional<SpanContext>& parent) {
    Span span;
    span.name = std::move(name);
    span.kind = kind;
    if (parent && parent->IsValid()) {
        span.context.trace_id = parent->trace_id;
        span.context.flags = parent->flags;
        span.parent_span_id = parent->span_id;
    } else {
        span.context.trace_id = NewTraceId();
        span.context.flags = 0x01;
    }
    span.context.span_id = NewSpanId();
    span.start_unix_nanos = NowUnixNanos();
    return span;
}

std::optional<std::vector<std::pair<std::string, std::string>>> ParseResourceAttributes(std::string_view text) {
    std::vector<std::pair<std::string, std::string>> out;
    while (!text.empty()) {
        const auto comma = text.find(',');
        const std::string_view pair = text.substr(0, comma);
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
        if (Trim(pair).empty()) continue;
        const auto eq = pair.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        std::string key = Trim(pair.substr(0, eq));
        auto value = PercentDecode(Trim(pair.substr(eq + 1)));
        if (key.empty() || !value) return std::nullopt;
        out.emplace_back(std::move(key), std::move(*value));
    }
    return out;
}

ExporterOptions ExporterOptions::FromEnvironment(const std::map<std::string, std::string>& env,
                                                 const std::string& default_service_name) {
    ExporterOptions o;
    const auto get = [&env](const char* name) -> std::string {
        auto it = env.find(name);
        return it == env.end() ? std::string{} : Trim(it->second);
    };
    std::string protocol = FirstSet(env, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"});
    if (protocol == "grpc") {
        throw ConfigError(
            "OTEL_EXPORTER_OTLP_PROTOCOL: grpc is not supported; eventlog speaks OTLP/HTTP (JSON), "
            "use the collector's HTTP port (4318)");
    }
    if (const std::string traces = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); !traces.empty()) {
        o.endpoint = traces;
    } else if (std::string base = get("OTEL_EXPORTER_OTLP_ENDPOINT"); !base.empty()) {
        if (base.back() != '/') base.push_back('/');
        o.endpoint = base + "v1/traces";
    }
    std::string disabled = get("OTEL_SDK_DISABLED");
    std::transform(disabled.begin(), disabled.end(), disabled.begin(), [](unsigned char c) { return std::tolower(c); });
    if (disabled == "true" || get("OTEL_TRACES_EXPORTER") == "none") o.endpoint.clear();

    if (const std::string t = FirstSet(env, {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"});
        !t.empty()) {
        long ms = 0;
        const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), ms);
        if (ec != std::errc() || p != t.data() + t.size() || ms <= 0) {
            throw ConfigError("OTEL_EXPORTER_OTLP_TIMEOUT: expected a positive number of milliseconds");
        }
        o.timeout = std::chrono::milliseconds(ms);
    }
    if (const std::string h = FirstSet(env, {"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"});
        !h.empty()) {
        auto pairs = ParseResourceAttributes(h);
        const bool clean = pairs && std::all_of(pairs->begin(), pairs->end(), [](const auto& kv) {
                               return kv.first.find_first_of(":\r\n") == std::string::npos &&
                                      kv.second.find_first_of("\r\n") == std::string::npos;
                           });
        if (clean) {
            for (const auto& [k, v] : *pairs) {
                std::string line = k;
                line += ": ";
                line += v;
                o.headers.push_back(std::move(line));
            }
        } else {
            // The value may hold credentials: name the variable only.
            log::Warning("otel_headers_ignored", {{"variable", std::string("OTEL_EXPORTER_OTLP_HEADERS")},
                                                  {"reason", std::string("malformed key=value list")}});
        }
    }

    std::vector<std::pair<std::string, std::string>> attributes;
    if (const std::string text = get("OTEL_RESOURCE_ATTRIBUTES"); !text.empty()) {
        if (auto parsed = ParseResourceAttributes(text)) {
            attributes = std::move(*parsed);
        } else {
            log::Warning("otel_resource_attributes_ignored",
                         {{"reason", std::string("malformed key=value list or percent-escape")}});
        }
    }
    std::string service = get("OTEL_SERVICE_NAME");
    if (service.empty()) {
        for (const auto& [k, v] : attributes) {
            if (k == "service.name") service = v;
        }
    }
    if (service.empty()) service = default_service_name;
    o.resource.emplace_back("service.name", service);
    const auto add = [&o](std::pair<std::string, std::string> attribute) {
        const bool seen = std::any_of(o.resource.begin(), o.resource.end(),
                                      [&attribute](const auto& e) { return e.first == attribute.first; });
        if (!seen) o.resource.push_back(std::move(attribute));
    };
    for (auto& attribute : attributes) add(std::move(attribute));
    add({"telemetry.sdk.name", "eventlog"});
    add({"telemetry.sdk.language", "cpp"});
    add({"telemetry.sdk.version", std::string(observability::Version())});
    return o;
}

std::string EncodeTraceRequest(const std::vector<std::pair<std::string, std::string>>& resource,
                               const std::vector<Span>& spans) {
    std::string out = "{\"resourceSpans\":[{\"resource\":{";
    Attributes attrs;
    attrs.reserve(resource.size());
    for (const auto& [k, v] : resource) attrs.emplace_back(k, v);
    AppendAttributes(out, attrs);
    out += "},\"scopeSpans\":[{\"scope\":{\"name\":";
    AppendJsonString(out, kScopeName);
    out += ",\"version\":";
    AppendJsonString(out, observability::Version());
    out += "},\"spans\":[";
    for (std::size_t i = 0; i < spans.size(); ++i) {
        if (i > 0) out.push_back(',');
        AppendSpan(out, spans[i]);
    }
    out += "]}]}]}";
    return out;
}

TraceExporter::TraceExporter(ExporterOptions options)
    : options_(std::move(options)), enabled_(!options_.endpoint.empty()) {
    options_.max_batch_spans = std::max<std::size_t>(1, options_.max_batch_spans);
    if (enabled_) thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
}

TraceExporter::~TraceExporter() {
    if (!enabled_) return;
    Flush(options_.shutdown_timeout);
    thread_.request_stop();
    wake_.notify_all();
    // jthread joins; a request in flight ends within options_.timeout.
}

void TraceExporter::Export(Span span) {
    // Parent-based sampling: a trace its originator did not sample is not recorded here either.
    if (!enabled_ || !span.context.Sampled()) return;
    {
        std::lock_guard lock(mutex_);
        if (queue_.size() >= options_.max_queue_spans) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        queue_.push_back(std::move(span));
        ++enqueued_;
        if (queue_.size() < options_.max_batch_spans) return;
    }
    wake_.notify_one();
}

bool TraceExporter::Flush(std::chrono::milliseconds timeout) {
    if (!enabled_) return true;
    std::unique_lock lock(mutex_);
    const std::uint64_t target = enqueued_;
    flush_target_ = std::max(flush_target_, target);
    wake_.notify_one();
    return idle_.wait_for(lock, timeout, [&] { return finished_ >= target; });
}

void TraceExporter::Run(const std::stop_token& stop) {
    observability::detail::HttpClient client;
    std::vector<std::string> headers = {"Content-Type: application/json"};
    headers.insert(headers.end(), options_.headers.begin(), options_.headers.end());
    bool warned = false;
    while (true) {
        std::vector<Span> batch;
        {
            std::unique_lock lock(mutex_);
            const auto ready = [&] {
                return queue_.size() >= options_.max_batch_spans || (finished_ < flush_target_ && !queue_.empty());
            };
            if (!ready()) {
                wake_.wait_for(lock, stop, options_.batch_delay, ready);
            }
            if (stop.stop_requested()) {
                // Stopping (after the destructor's bounded flush): what is left is dropped, not sent.
                dropped_.fetch_add(queue_.size(), std::memory_order_relaxed);
                finished_ += queue_.size();
                queue_.clear();
                idle_.notify_all();
                return;
            }
            if (queue_.empty()) continue;
            const std::size_t n = std::min(queue_.size(), options_.max_batch_spans);
            batch.reserve(n);
            for (std::size_t i = 0; i < n; ++i) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        observability::detail::HttpRequest request;
        request.url = options_.endpoint;
        request.headers = headers;
        request.body = EncodeTraceRequest(options_.resource, batch);
        request.timeout = options_.timeout;
        request.connect_timeout = std::min(options_.timeout, std::chrono::milliseconds(3'000));
        const observability::detail::HttpResponse response = client.Post(request);
        const std::uint64_t n = batch.size();
        if (response.status >= 200 && response.status < 300) {
            const std::uint64_t rejected = std::min(RejectedSpans(response.body), n);
            exported_.fetch_add(n - rejected, std::memory_order_relaxed);
            dropped_.fetch_add(rejected, std::memory_order_relaxed);
            warned = false;
        } else {
            dropped_.fetch_add(n, std::memory_order_relaxed);
            // One line per outage, not per batch: the collector being down must not flood the logs.
            if (!warned) {
                log::Warning("otel_export_failed",
                             {{"status", static_cast<std::int64_t>(response.status)},
                              {"error", response.status == 0 ? response.error : std::string("HTTP error")},
                              {"dropped_spans", static_cast<std::int64_t>(n)}});
                warned = true;
            }
        }
        {
            std::lock_guard lock(mutex_);
            finished_ += n;
        }
        idle_.notify_all();
    }
}

}  // namespace eventlog::tracing
