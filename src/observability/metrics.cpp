#include <fmt/format.h>

#include <cmath>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/metrics.hpp>
#include <stdexcept>
#include <variant>

namespace eventlog::metrics {
namespace {

bool ValidMetricName(std::string_view name) {
    if (name.empty()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

bool ValidLabelName(std::string_view name) {
    if (name.empty() || name.starts_with("__")) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not one.
std::size_t Utf8SequenceLength(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return 1;
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;  // no UTF-16 surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (i + len > s.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return 0;
    }
    return len;
}

/// Appends `text` escaped for a label value (\\, \", \n) or HELP text (\\, \n); bytes that are not UTF-8
/// become U+FFFD, because the format is UTF-8.
void AppendEscaped(std::string& out, std::string_view text, bool label_value) {
    for (std::size_t i = 0; i < text.size();) {
        const std::size_t len = Utf8SequenceLength(text, i);
        if (len == 0) {
            out += "\xEF\xBF\xBD";
            ++i;
            continue;
        }
        const char c = text[i];
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '"' && label_value) {
            out += "\\\"";
        } else {
            out.append(text.substr(i, len));
        }
        i += len;
    }
}

void AppendNumber(std::string& out, double v) {
    if (std::isnan(v)) {
        out += "NaN";
    } else if (std::isinf(v)) {
        out += v > 0 ? "+Inf" : "-Inf";
    } else {
        fmt::format_to(std::back_inserter(out), "{}", v);
    }
}

/// Appends {a="x",b="y"[,le="..."]} (nothing when there are no labels at all).
void AppendLabels(std::string& out, const std::vector<std::string>& names, const std::vector<std::string>& values,
                  const std::string* le = nullptr) {
    if (names.empty() && le == nullptr) return;
    out.push_back('{');
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) out.push_back(',');
        out += names[i];
        out += "=\"";
        AppendEscaped(out, values[i], true);
        out.push_back('"');
    }
    if (le != nullptr) {
        if (!names.empty()) out.push_back(',');
        out += "le=\"";
        out += *le;
        out.push_back('"');
    }
    out.push_back('}');
}

const char* TypeName(Type type) {
    switch (type) {
        case Type::kCounter:
            return "counter";
        case Type::kGauge:
            return "gauge";
        case Type::kHistogram:
            return "histogram";
    }
    return "untyped";
}

void AppendSample(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, double value) {
    out += name;
    AppendLabels(out, names, values);
    out.push_back(' ');
    AppendNumber(out, value);
    out.push_back('\n');
}

void RenderSeries(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Counter& c, const std::vector<double>&) {
    AppendSample(out, name, names, values, c.Value());
}

void RenderSeries(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Gauge& g, const std::vector<double>&) {
    AppendSample(out, name, names, values, g.Value());
}

void RenderSeries(std::string& out, const std::string& name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const Histogram& h, const std::vector<double>& bounds) {
    const Histogram::Snapshot snap = h.Read();
    const std::string bucket = name + "_bucket";
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        std::string le;
        AppendNumber(le, i < bounds.size() ? bounds[i] : INFINITY);
        out += bucket;
        AppendLabels(out, names, values, &le);
        out.push_back(' ');
        out += std::to_string(snap.cumulative[i]);
        out.push_back('\n');
    }
    AppendSample(out, name + "_sum", names, values, snap.sum);
    AppendSample(out, name + "_count", names, values, static_cast<double>(snap.cumulative.back()));
}

}  // namespace

void Counter::Inc(double amount) noexcept {
    if (amount > 0) value_.fetch_add(amount, std::memory_order_relaxed);
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()), counts_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
    for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) noexcept {
    if (std::isnan(value)) return;
    std::size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
    Snapshot snap;
    snap.cumulative.resize(bounds_.size() + 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += counts_[i].load(std::memory_order_relaxed);
        snap.cumulative[i] = running;
    }
    snap.sum = sum_.load(std::memory_order_relaxed);
    return snap;
}

template <typename T>
Family<T>::Family(const Spec& spec, std::vector<std::string> label_names)
    : label_names_(std::move(label_names)), bounds_(spec.buckets.begin(), spec.buckets.end()), name_(spec.name) {}

template <typename T>
T& Family<T>::WithLabels(const std::vector<std::string>& values) {
    if (values.size() != label_names_.size()) {
        throw std::invalid_argument(
            fmt::format("metric {}: {} label values for {} labels", name_, values.size(), label_names_.size()));
    }
    {
        std::shared_lock lock(mutex_);
        if (auto it = series_.find(values); it != series_.end()) return *it->second;
    }
    std::unique_lock lock(mutex_);
    if (auto it = series_.find(values); it != series_.end()) return *it->second;
    const std::vector<std::string>* key = &values;
    std::vector<std::string> other;
    if (series_.size() >= kMaxSeries) {
        other.assign(values.size(), "other");
        if (auto it = series_.find(other); it != series_.end()) return *it->second;
        key = &other;
    }
    std::unique_ptr<T> series;
    if constexpr (std::is_same_v<T, Histogram>) {
        series = std::make_unique<Histogram>(bounds_);
    } else {
        series = std::make_unique<T>();
    }
    const auto inserted = series_.emplace(*key, std::move(series)).first;
    return *inserted->second;
}

template <typename T>
T& Family<T>::Get() {
    if (!label_names_.empty()) throw std::invalid_argument(fmt::format("metric {} has labels", name_));
    return WithLabels({});
}

template <typename T>
void Family<T>::RenderSamples(std::string& out) const {
    std::shared_lock lock(mutex_);
    for (const auto& [values, series] : series_) RenderSeries(out, name_, label_names_, values, *series, bounds_);
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
    std::string name;
    std::string help;
    Type type{Type::kGauge};
    std::vector<std::string> label_names;
    std::variant<std::monostate, std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
                 std::unique_ptr<HistogramFamily>, Callback>
        metric;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::Add(const Spec& spec, Type type) {
    if (spec.type != type) throw std::invalid_argument(fmt::format("metric {}: spec of another type", spec.name));
    if (!ValidMetricName(spec.name)) throw std::invalid_argument(fmt::format("bad metric name '{}'", spec.name));
    if (type == Type::kCounter && !spec.name.ends_with("_total")) {
        throw std::invalid_argument(fmt::format("counter {} must end in _total", spec.name));
    }
    auto entry = std::make_unique<Entry>();
    entry->name = spec.name;
    entry->help = spec.help;
    entry->type = type;
    for (const std::string_view label : spec.labels) {
        if (!ValidLabelName(label) || (type == Type::kHistogram && label == "le")) {
            throw std::invalid_argument(fmt::format("metric {}: bad label name '{}'", spec.name, label));
        }
        entry->label_names.emplace_back(label);
    }
    if (type == Type::kHistogram) {
        if (spec.buckets.empty()) throw std::invalid_argument(fmt::format("histogram {}: no buckets", spec.name));
        for (std::size_t i = 0; i < spec.buckets.size(); ++i) {
            if (!std::isfinite(spec.buckets[i]) || (i > 0 && spec.buckets[i] <= spec.buckets[i - 1])) {
                throw std::invalid_argument(
                    fmt::format("histogram {}: buckets must be finite and strictly increasing", spec.name));
            }
        }
    }
    std::lock_guard lock(mutex_);
    for (const auto& e : entries_) {
        // A histogram's _bucket/_sum/_count series would collide with metrics named like them.
        if (e->name == entry->name) throw std::invalid_argument(fmt::format("metric {} already exists", spec.name));
    }
    entries_.push_back(std::move(entry));
    return *entries_.back();
}

CounterFamily& Registry::AddCounter(const Spec& spec) {
    Entry& e = Add(spec, Type::kCounter);
    auto family = std::make_unique<CounterFamily>(spec, e.label_names);
    CounterFamily& ref = *family;
    std::lock_guard lock(mutex_);
    e.metric = std::move(family);
    return ref;
}

GaugeFamily& Registry::AddGauge(const Spec& spec) {
    Entry& e = Add(spec, Type::kGauge);
    auto family = std::make_unique<GaugeFamily>(spec, e.label_names);
    GaugeFamily& ref = *family;
    std::lock_guard lock(mutex_);
    e.metric = std::move(family);
    return ref;
}

HistogramFamily& Registry::AddHistogram(const Spec& spec) {
    Entry& e = Add(spec, Type::kHistogram);
    auto family = std::make_unique<HistogramFamily>(spec, e.label_names);
    HistogramFamily& ref = *family;
    std::lock_guard lock(mutex_);
    e.metric = std::move(family);
    return ref;
}

void Registry::AddCallback(const Spec& spec, Callback callback) {
    if (spec.type == Type::kHistogram) {
        throw std::invalid_argument(fmt::format("metric {}: callbacks give counters or gauges", spec.name));
    }
    Entry& e = Add(spec, spec.type);
    std::lock_guard lock(mutex_);
    e.metric = std::move(callback);
}

std::string Registry::Render() const {
    std::vector<const Entry*> entries;
    {
        std::lock_guard lock(mutex_);
        entries.reserve(entries_.size());
        for (const auto& e : entries_) entries.push_back(e.get());
    }
    std::string out;
    for (const Entry* e : entries) {
        // Entries are never removed and their metric is set before Add* returns; a family registered by a
        // concurrent Add* call after the copy above is rendered at the next scrape.
        Callback callback;
        {
            std::lock_guard lock(mutex_);
            if (std::holds_alternative<std::monostate>(e->metric)) continue;
            if (const auto* cb = std::get_if<Callback>(&e->metric)) callback = *cb;
        }
        out += "# HELP ";
        out += e->name;
        out.push_back(' ');
        AppendEscaped(out, e->help, false);
        out += "\n# TYPE ";
        out += e->name;
        out.push_back(' ');
        out += TypeName(e->type);
        out.push_back('\n');
        if (callback) {
            std::vector<CallbackSample> samples;
            try {
                samples = callback();
            } catch (const std::exception& ex) {
                log::Warning("metrics_callback_failed", {{"metric", e->name}, {"error", std::string(ex.what())}});
                continue;
            }
            std::map<std::vector<std::string>, double> unique;  // sorted, one sample per label set
            for (auto& s : samples) {
                if (s.label_values.size() != e->label_names.size()) continue;
                unique[std::move(s.label_values)] = s.value;
            }
            for (const auto& [values, value] : unique) AppendSample(out, e->name, e->label_names, values, value);
        } else if (const auto* c = std::get_if<std::unique_ptr<CounterFamily>>(&e->metric)) {
            (*c)->RenderSamples(out);
        } else if (const auto* g = std::get_if<std::unique_ptr<GaugeFamily>>(&e->metric)) {
            (*g)->RenderSamples(out);
        } else if (const auto* h = std::get_if<std::unique_ptr<HistogramFamily>>(&e->metric)) {
            (*h)->RenderSamples(out);
        }
    }
    return out;
}

void AddBuildInfo(Registry& registry, const std::string& version, const std::string& commit) {
    registry.AddGauge(kBuildInfo).WithLabels({version, commit}).Set(1);
}

}  // namespace eventlog::metrics
