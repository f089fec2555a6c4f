#include <array>
#include <cstdio>
#include <cstring>
#include <eventlog/clickhouse/row_binary.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

namespace eventlog::clickhouse {

namespace {

enum class Source {
    kEventId,
    kEventType,
    kEventDateTime,
    kEnvironment,
    kEventContext,
    kMetadataVersion,
    kTraceId,
    kBatchId
};

struct SourceName {
    std::string_view name;
    Source source;
};

constexpr SourceName kSources[] = {
    {"event_id", Source::kEventId},
    {"event_type", Source::kEventType},
    {"event_date_time", Source::kEventDateTime},
    {"environment", Source::kEnvironment},
    {"event_context", Source::kEventContext},
    {"metadata_version", Source::kMetadataVersion},
    {"trace_id", Source::kTraceId},
    {"batch_id", Source::kBatchId},
};

std::optional<Source> FindSource(std::string_view name) {
    for (const auto& entry : kSources) {
        if (entry.name == name) return entry.source;
    }
    return std::nullopt;
}

enum class Base {
    kString,
    kFixedString,
    kUuid,
    kDateTime,
    kDateTime64,
    kDate,
    kDate32,
    kUInt8,
    kUInt16,
    kUInt32,
    kUInt64,
    kInt8,
    kInt16,
    kInt32,
    kInt64,
    kFloat32,
    kFloat64,
    kBool,
};

struct TypeSpec {
    Base base{Base::kString};
    bool nullable{false};
    std::size_t fixed_size{0};  // FixedString(N)
    int precision{0};           // DateTime64(P)
};

std::string_view Trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t' || text.front() == '\n'))
        text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n')) text.remove_suffix(1);
    return text;
}

// If `type` is "Name(args)", returns args.
std::optional<std::string_view> Arguments(std::string_view type, std::string_view name) {
    if (type.size() < name.size() + 2 || type.substr(0, name.size()) != name || type.back() != ')') return std::nullopt;
    std::string_view rest = Trim(type.substr(name.size()));
    if (rest.empty() || rest.front() != '(') return std::nullopt;
    return Trim(rest.substr(1, rest.size() - 2));
}

std::optional<long> ParseSmallInt(std::string_view text) {
    text = Trim(text);
    if (text.empty() || text.size() > 9) return std::nullopt;
    long value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + (c - '0');
    }
    return value;
}

std::optional<TypeSpec> ParseType(std::string_view type) {
    type = Trim(type);
    if (auto inner = Arguments(type, "LowCardinality")) return ParseType(*inner);  // RowBinary: same as inner type
    if (auto inner = Arguments(type, "Nullable")) {
        auto spec = ParseType(*inner);
        if (!spec || spec->nullable) return std::nullopt;
        spec->nullable = true;
        return spec;
    }
    struct Simple {
        std::string_view name;
        Base base;
    };
    static constexpr Simple kSimple[] = {
        {"String", Base::kString}, {"UUID", Base::kUuid},       {"DateTime", Base::kDateTime},
        {"Date", Base::kDate},     {"Date32", Base::kDate32},   {"UInt8", Base::kUInt8},
        {"UInt16", Base::kUInt16}, {"UInt32", Base::kUInt32},   {"UInt64", Base::kUInt64},
        {"Int8", Base::kInt8},     {"Int16", Base::kInt16},     {"Int32", Base::kInt32},
        {"Int64", Base::kInt64},   {"Float32", Base::kFloat32}, {"Float64", Base::kFloat64},
        {"Bool", Base::kBool},     {"Boolean", Base::kBool},
    };
    for (const auto& simple : kSimple) {
        if (type == simple.name) return TypeSpec{simple.base};
    }
    if (auto args = Arguments(type, "FixedString")) {
        auto n = ParseSmallInt(*args);
        if (!n || *n <= 0) return std::nullopt;
        TypeSpec spec{Base::kFixedString};
        spec.fixed_size = static_cast<std::size_t>(*n);
        return spec;
    }
    if (auto args = Arguments(type, "DateTime64")) {
        auto comma = args->find(',');
        auto precision = ParseSmallInt(args->substr(0, comma));
        if (!precision || *precision > 9) return std::nullopt;
        TypeSpec spec{Base::kDateTime64};
        spec.precision = static_cast<int>(*precision);
        return spec;
    }
    if (auto args = Arguments(type, "DateTime")) {  // DateTime('tz'): the value is still seconds since the epoch
        if (!args->empty() && args->front() == '\'') return TypeSpec{Base::kDateTime};
        return std::nullopt;
    }
    return std::nullopt;
}

bool Compatible(Source source, Base base) {
    switch (source) {
        case Source::kEventId:
        case Source::kBatchId:
            return base == Base::kUuid || base == Base::kString || base == Base::kFixedString;
        case Source::kEventDateTime:
            return base == Base::kDateTime || base == Base::kDateTime64 || base == Base::kDate || base == Base::kDate32;
        case Source::kMetadataVersion:
            return base == Base::kUInt8 || base == Base::kUInt16 || base == Base::kUInt32 || base == Base::kUInt64 ||
                   base == Base::kInt8 || base == Base::kInt16 || base == Base::kInt32 || base == Base::kInt64 ||
                   base == Base::kFloat32 || base == Base::kFloat64 || base == Base::kBool || base == Base::kString;
        case Source::kEventType:
        case Source::kEnvironment:
        case Source::kEventContext:
        case Source::kTraceId:
            return base == Base::kString || base == Base::kFixedString;
    }
    return false;
}

template <typename T>
void AppendLittleEndian(T value, std::string& out) {
    using U = std::make_unsigned_t<T>;
    auto bits = static_cast<U>(value);
    for (std::size_t i = 0; i < sizeof(T); ++i) {
        out.push_back(static_cast<char>(bits & 0xFF));
        if constexpr (sizeof(T) > 1) bits = static_cast<U>(bits >> 8);
    }
}

void AppendString(std::string_view value, std::string& out) {
    AppendVarUInt(value.size(), out);
    out.append(value);
}

constexpr std::int64_t kMicrosPerSecond = 1'000'000;
constexpr std::int64_t kMicrosPerDay = 86'400 * kMicrosPerSecond;

std::int64_t FloorDiv(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

struct Civil {
    std::int64_t year;
    unsigned month;
    unsigned day;
};

Civil CivilFromDays(std::int64_t z) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    return Civil{static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

// "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) for messages.
std::string FormatMicros(std::int64_t micros) {
    const std::int64_t days = FloorDiv(micros, kMicrosPerDay);
    const std::int64_t in_day = micros - days * kMicrosPerDay;
    const Civil civil = CivilFromDays(days);
    const std::int64_t seconds = in_day / kMicrosPerSecond;
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%04lld-%02u-%02u %02lld:%02lld:%02lld.%06lld",
                  static_cast<long long>(civil.year), civil.month, civil.day, static_cast<long long>(seconds / 3600),
                  static_cast<long long>(seconds / 60 % 60), static_cast<long long>(seconds % 60),
                  static_cast<long long>(in_day % kMicrosPerSecond));
    return buffer;
}

// Ranges as documented for current ClickHouse releases.
constexpr std::int64_t kDateTimeMaxSeconds = std::numeric_limits<std::uint32_t>::max();  // 2106-02-07 06:28:15
constexpr std::int64_t kExtendedMinDays = DaysFromCivil(1900, 1, 1);                     // Date32, DateTime64
constexpr std::int64_t kExtendedMaxDays = DaysFromCivil(2299, 12, 31);
constexpr std::int64_t kDateMaxDays = std::numeric_limits<std::uint16_t>::max();  // 2149-06-06

[[noreturn]] void Reject(const std::string& column, const std::string& problem) {
    throw RejectedError(column + ": " + problem);
}

}  // namespace

struct RowBinaryEncoder::Field {
    Source source;
    std::string name;
    std::string type_text;
    TypeSpec type;
};

void AppendVarUInt(std::uint64_t value, std::string& out) {
    while (value >= 0x80) {
        out.push_back(static_cast<char>((value & 0x7F) | 0x80));
        value >>= 7;
    }
    out.push_back(static_cast<char>(value));
}

void AppendUuid(const Uuid& uuid, std::string& out) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(uuid.bytes[static_cast<std::size_t>(i)]));
    for (int i = 15; i >= 8; --i) out.push_back(static_cast<char>(uuid.bytes[static_cast<std::size_t>(i)]));
}

RowBinaryEncoder::RowBinaryEncoder() = default;
RowBinaryEncoder::RowBinaryEncoder(const RowBinaryEncoder&) = default;
RowBinaryEncoder::RowBinaryEncoder(RowBinaryEncoder&&) noexcept = default;
RowBinaryEncoder& RowBinaryEncoder::operator=(const RowBinaryEncoder&) = default;
RowBinaryEncoder& RowBinaryEncoder::operator=(RowBinaryEncoder&&) noexcept = default;
RowBinaryEncoder::~RowBinaryEncoder() = default;

RowBinaryEncoder RowBinaryEncoder::ForColumns(const std::vector<Column>& columns) {
    RowBinaryEncoder encoder;
    for (const auto& column : columns) {
        const auto source = FindSource(column.name);
        const bool computed = column.default_kind == "MATERIALIZED" || column.default_kind == "ALIAS";
        if (computed) continue;  // the server computes it; it cannot be inserted
        // A column no event field fills is left out of the insert: the server writes its DEFAULT expression or,
        // without one, the type's default value (0, '', ...), as it does for any omitted column.
        if (!source) continue;
        const auto type = ParseType(column.type);
        if (!type || !Compatible(*source, type->base) ||
            ((*source == Source::kEventId || *source == Source::kBatchId) && type->base == Base::kFixedString &&
             type->fixed_size != 16)) {
            throw ConfigError("ClickHouse column `" + column.name + "` has type " + column.type +
                              ", which the relay cannot encode for this field");
        }
        encoder.fields_.push_back(Field{*source, column.name, column.type, *type});
    }
    for (const auto& field : encoder.fields_) {
        encoder.column_list_ += encoder.column_list_.empty() ? "(" : ", ";
        encoder.column_list_ += QuoteIdentifier(field.name);
        encoder.names_.push_back(field.name);
    }
    encoder.column_list_ += encoder.column_list_.empty() ? "()" : ")";
    return encoder;
}

const std::string& RowBinaryEncoder::ColumnList() const { return column_list_; }

const std::vector<std::string>& RowBinaryEncoder::ColumnNames() const { return names_; }

bool RowBinaryEncoder::Encodes(std::string_view field) const {
    for (const auto& name : names_) {
        if (name == field) return true;
    }
    return false;
}

namespace {

void AppendFixed(const std::string& column, std::string_view value, std::size_t size, std::string& out) {
    if (value.size() > size) {
        Reject(column, "value of " + std::to_string(value.size()) + " bytes does not fit FixedString(" +
                           std::to_string(size) + ")");
    }
    out.append(value);
    out.append(size - value.size(), '\0');
}

void AppendText(const std::string& column, const TypeSpec& type, std::string_view value, std::string& out) {
    if (type.base == Base::kFixedString) {
        AppendFixed(column, value, type.fixed_size, out);
    } else {
        AppendString(value, out);
    }
}

void AppendUuidValue(const std::string& column, const TypeSpec& type, const Uuid& uuid, std::string& out) {
    switch (type.base) {
        case Base::kUuid:
            AppendUuid(uuid, out);
            break;
        case Base::kFixedString:
            AppendFixed(column, std::string_view(reinterpret_cast<const char*>(uuid.bytes.data()), uuid.bytes.size()),
                        type.fixed_size, out);
            break;
        default:
            AppendString(uuid.ToString(), out);
            break;
    }
}

void AppendTime(const std::string& column, const TypeSpec& type, std::int64_t micros, std::string& out) {
    const auto out_of_range = [&](std::string_view type_name, std::string_view range) {
        Reject(column,
               FormatMicros(micros) + " is outside " + std::string(type_name) + "'s range " + std::string(range));
    };
    switch (type.base) {
        case Base::kDateTime: {
            const std::int64_t seconds = FloorDiv(micros, kMicrosPerSecond);
            if (seconds < 0 || seconds > kDateTimeMaxSeconds) {
                out_of_range("DateTime", "1970-01-01 00:00:00..2106-02-07 06:28:15");
            }
            AppendLittleEndian(static_cast<std::uint32_t>(seconds), out);
            break;
        }
        case Base::kDate: {
            const std::int64_t days = FloorDiv(micros, kMicrosPerDay);
            if (days < 0 || days > kDateMaxDays) out_of_range("Date", "1970-01-01..2149-06-06");
            AppendLittleEndian(static_cast<std::uint16_t>(days), out);
            break;
        }
        case Base::kDate32: {
            const std::int64_t days = FloorDiv(micros, kMicrosPerDay);
            if (days < kExtendedMinDays || days > kExtendedMaxDays) out_of_range("Date32", "1900-01-01..2299-12-31");
            AppendLittleEndian(static_cast<std::int32_t>(days), out);
            break;
        }
        case Base::kDateTime64: {
            const std::int64_t days = FloorDiv(micros, kMicrosPerDay);
            if (days < kExtendedMinDays || days > kExtendedMaxDays) {
                out_of_range("DateTime64", "1900-01-01 00:00:00..2299-12-31 23:59:59");
            }
            std::int64_t value = micros;
            if (type.precision < 6) {
                std::int64_t divisor = 1;
                for (int i = type.precision; i < 6; ++i) divisor *= 10;
                value = FloorDiv(micros, divisor);
            } else {
                // |micros| < 1.1e16 inside the range above, so * 1000 (precision 9) stays inside int64.
                for (int i = 6; i < type.precision; ++i) value *= 10;
            }
            AppendLittleEndian(value, out);
            break;
        }
        default:
            break;
    }
}

}  // namespace

std::optional<std::string> RowBinaryEncoder::EventTimeLiteral(std::int64_t micros) const {
    for (const auto& field : fields_) {
        if (field.source != Source::kEventDateTime) continue;
        std::string probe;
        try {
            AppendTime(field.name, field.type, micros, probe);  // the same range checks as Append()
        } catch (const RejectedError&) {
            return std::nullopt;
        }
        if (field.type.base == Base::kDateTime) return std::to_string(FloorDiv(micros, kMicrosPerSecond));
        if (field.type.base != Base::kDateTime64) return std::nullopt;
        std::string text = FormatMicros(micros);  // "YYYY-MM-DD hh:mm:ss.ffffff", floored like the stored value
        if (field.type.precision <= 0) {
            text.resize(19);
        } else if (field.type.precision < 6) {
            text.resize(20 + static_cast<std::size_t>(field.type.precision));
        } else {
            text.append(static_cast<std::size_t>(field.type.precision - 6), '0');
        }
        return "'" + text + "'";
    }
    return std::nullopt;
}

namespace {

void AppendInteger(const std::string& column, const TypeSpec& type, std::uint64_t value, std::string& out) {
    const auto check = [&](std::uint64_t max, std::string_view type_name) {
        if (value > max) {
            Reject(column, std::to_string(value) + " is outside " + std::string(type_name) + "'s range 0.." +
                               std::to_string(max));
        }
    };
    switch (type.base) {
        case Base::kUInt8:
            check(std::numeric_limits<std::uint8_t>::max(), "UInt8");
            AppendLittleEndian(static_cast<std::uint8_t>(value), out);
            break;
        case Base::kUInt16:
            check(std::numeric_limits<std::uint16_t>::max(), "UInt16");
            AppendLittleEndian(static_cast<std::uint16_t>(value), out);
            break;
        case Base::kUInt32:
            check(std::numeric_limits<std::uint32_t>::max(), "UInt32");
            AppendLittleEndian(static_cast<std::uint32_t>(value), out);
            break;
        case Base::kUInt64:
            AppendLittleEndian(value, out);
            break;
        case Base::kInt8:
            check(std::numeric_limits<std::int8_t>::max(), "Int8");
            AppendLittleEndian(static_cast<std::int8_t>(value), out);
            break;
        case Base::kInt16:
            check(std::numeric_limits<std::int16_t>::max(), "Int16");
            AppendLittleEndian(static_cast<std::int16_t>(value), out);
            break;
        case Base::kInt32:
            check(std::numeric_limits<std::int32_t>::max(), "Int32");
            AppendLittleEndian(static_cast<std::int32_t>(value), out);
            break;
        case Base::kInt64:
            check(std::numeric_limits<std::int64_t>::max(), "Int64");
            AppendLittleEndian(static_cast<std::int64_t>(value), out);
            break;
        case Base::kBool:
            check(1, "Bool");
            out.push_back(static_cast<char>(value));
            break;
        case Base::kFloat32: {
            const auto f = static_cast<float>(value);
            std::uint32_t bits;
            static_assert(sizeof bits == sizeof f);
            std::memcpy(&bits, &f, sizeof bits);
            AppendLittleEndian(bits, out);
            break;
        }
        case Base::kFloat64: {
            const auto d = static_cast<double>(value);
            std::uint64_t bits;
            static_assert(sizeof bits == sizeof d);
            std::memcpy(&bits, &d, sizeof bits);
            AppendLittleEndian(bits, out);
            break;
        }
        default:
            AppendString(std::to_string(value), out);
            break;
    }
}

}  // namespace

void RowBinaryEncoder::Append(const Event& event, const Uuid& batch_id, std::string& out) const {
    const std::size_t initial_size = out.size();
    try {
        for (const auto& field : fields_) {
            const bool is_null = field.type.nullable && field.source == Source::kTraceId && event.trace_id.empty();
            if (field.type.nullable) out.push_back(is_null ? '\1' : '\0');
            if (is_null) continue;
            switch (field.source) {
                case Source::kEventId:
                    AppendUuidValue(field.name, field.type, event.event_id, out);
                    break;
                case Source::kBatchId:
                    AppendUuidValue(field.name, field.type, batch_id, out);
                    break;
                case Source::kEventType:  // the name as written, in snake_case (core/json.hpp)
                    if (IsSnakeCase(event.event_type)) {
                        AppendText(field.name, field.type, event.event_type, out);
                    } else {
                        AppendText(field.name, field.type, ToSnakeCase(event.event_type), out);
                    }
                    break;
                case Source::kEnvironment:
                    AppendText(field.name, field.type, event.environment, out);
                    break;
                case Source::kEventContext:
                    AppendText(field.name, field.type, event.event_context, out);
                    break;
                case Source::kTraceId:
                    AppendText(field.name, field.type, event.trace_id, out);
                    break;
                case Source::kEventDateTime:
                    AppendTime(field.name, field.type, event.event_date_time_us, out);
                    break;
                case Source::kMetadataVersion:
                    AppendInteger(field.name, field.type, event.metadata_version, out);
                    break;
            }
        }
    } catch (...) {
        out.resize(initial_size);
        throw;
    }
}

}  // namespace eventlog::clickhouse
