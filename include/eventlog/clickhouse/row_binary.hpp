#pragma once

#include <cstddef>
#include <cstdint>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/core/uuid.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace eventlog::clickhouse {

/// Appends `value` as an unsigned LEB128 varint (RowBinary string lengths).
void AppendVarUInt(std::uint64_t value, std::string& out);

/// Appends a UUID in RowBinary layout: bytes 0..7 reversed, then bytes 8..15 reversed (two LE UInt64 halves).
void AppendUuid(const Uuid& uuid, std::string& out);

/// Encodes events as RowBinary rows for a given target table. Source fields an insert can fill, by
/// event_log column name: event_id, event_type, event_date_time, environment, event_context,
/// metadata_version, trace_id, batch_id. Immutable after construction, copyable, thread-safe for const use.
class RowBinaryEncoder {
public:
    /// How a source field is written into one column (internal plan, exposed for inspection).
    struct Field;

    /// Plans the encoding from the target table's columns. Columns that are not source fields are omitted (the
    /// server fills their DEFAULT, or the type's default without one); MATERIALIZED and ALIAS columns are always
    /// omitted (the server computes them). A source column whose type cannot be encoded throws ConfigError naming
    /// the column and type.
    static RowBinaryEncoder ForColumns(const std::vector<Column>& columns);

    RowBinaryEncoder(const RowBinaryEncoder&);
    RowBinaryEncoder(RowBinaryEncoder&&) noexcept;
    RowBinaryEncoder& operator=(const RowBinaryEncoder&);
    RowBinaryEncoder& operator=(RowBinaryEncoder&&) noexcept;
    ~RowBinaryEncoder();

    /// "(`event_id`, `event_type`, ...)" in the order Append() writes the values.
    const std::string& ColumnList() const;
    /// The column names written, in order.
    const std::vector<std::string>& ColumnNames() const;
    /// True when the source field (e.g. "batch_id") is written into some column.
    bool Encodes(std::string_view field) const;

    /// A literal equal to the value Append() stores in the event_date_time column for `micros` (seconds for
    /// DateTime, a 'YYYY-MM-DD hh:mm:ss.f' string cut to the precision for DateTime64), for point lookups on the
    /// table's sort key; nullopt when there is no such DateTime/DateTime64 column or the value is outside its range.
    std::optional<std::string> EventTimeLiteral(std::int64_t micros) const;

    /// Appends one row. Throws RejectedError naming the column and the problem when a value cannot be
    /// represented (out of range, too long); `out` is then restored to its size before the call.
    void Append(const Event& event, const Uuid& batch_id, std::string& out) const;

private:
    RowBinaryEncoder();
    std::vector<Field> fields_;
    std::vector<std::string> names_;
    std::string column_list_;
};

}  // namespace eventlog::clickhouse
