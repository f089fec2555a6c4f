#pragma once

#include <cstdint>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/clickhouse/row_binary.hpp>
#include <eventlog/core/config.hpp>
#include <optional>
#include <string>
#include <vector>

#include "relay/detail/pending_row.hpp"
#include "relay/detail/step_probe.hpp"

namespace eventlog::relay::detail {

/// The ClickHouse side of delivery: the target's encoding plan, this session's stage, inserts, the presence
/// check and the fence. Not thread-safe; one per relay.
///
/// The fence: a session inserts only through its own stage, a Null-engine table shaped like the target with a
/// materialized view that forwards every block into the target. The stage is created once, when the session
/// starts and before it claims anything, and never again under that name. Dropping it is the fence: ClickHouse
/// makes DROP TABLE wait for every insert that has already opened the table, and an insert that opens it later
/// fails with "table doesn't exist". So once Fence(owner) returns, no insert of that owner is running or can ever
/// land, whatever its link speed or queueing, and a presence check tells the final truth.
class ClickHouseSink {
public:
    /// `probe`: the relay's test seam (it must outlive the sink).
    explicit ClickHouseSink(const Config& config, const Probe& probe = kNoProbe);

    /// Reads the target table's columns, plans the encoding and creates the stage of session (`outbox_id`,
    /// `owner`). Throws ConfigError when the target is missing or unusable.
    void Open(const std::string& outbox_id, int owner);
    /// True after a successful Open().
    bool IsOpen() const noexcept { return encoder_.has_value() && !stage_.empty(); }
    /// Forgets the plan and the stage name (the stage itself is left for the fence).
    void Reset() noexcept;

    /// Encodes `rows` and inserts them through the stage. Rows the target column cannot represent move to `dead`
    /// (with the reason) before anything is sent; the rest stay in `rows`. Throws like clickhouse::Client::Insert.
    void Insert(std::vector<PendingRow>& rows, std::vector<PendingRow>& dead);
    /// The rows whose event_id is not in the target table. Queries are bounded in size (at most ~128 KiB of SQL
    /// each, so never near max_query_size) and in cost: they look up the rows' exact event times, which lead the
    /// table's sort key, so the cost follows the rows checked, not the table's size or the batch's time span.
    std::vector<PendingRow> Missing(const std::vector<PendingRow>& rows);

    /// Drops every stage of `owner` (whose PostgreSQL lock the caller holds): afterwards no insert of that
    /// owner is running and none can start.
    void Fence(int owner);
    /// Owners that have a stage under this outbox's id (live ones among them).
    std::vector<int> StagedOwners();
    /// Drops this session's own stage (at a clean stop, with nothing in flight). Never throws.
    void DropOwnStage() noexcept;
    /// GET /ping.
    void Ping() { client_.Ping(); }
    /// The column list the encoder writes, for logs.
    std::string ColumnList() const { return encoder_ ? encoder_->ColumnList() : std::string(); }
    /// The server's version text.
    std::string ServerVersion() { return client_.Version().text; }

private:
    std::string Prefix() const;
    std::vector<std::string> StageTables(const std::string& name_prefix);
    void Drop(const std::string& table);
    std::string Qualified(const std::string& table) const;

    const Config& config_;
    const Probe& probe_;
    clickhouse::Client client_;
    std::optional<clickhouse::RowBinaryEncoder> encoder_;
    std::string outbox_id_;
    std::string stage_;
    std::uint64_t send_seq_{0};
};

}  // namespace eventlog::relay::detail
