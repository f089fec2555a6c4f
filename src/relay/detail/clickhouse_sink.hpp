#pragma once

#include <chrono>
#include <cstdint>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/clickhouse/row_binary.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "relay/detail/pending_row.hpp"
#include "relay/detail/step_probe.hpp"

namespace eventlog::relay::detail {

/// A delivery record's target (migration 0022): where its rows are sent, fenced and looked up.
/// kOneServer: the one server (no cluster); "host:port": that node of CLICKHOUSE_SHARDS; kAnyNode: any node (fenced
/// and looked up on every node).
inline const std::string kOneServer;
inline const std::string kAnyNode = "*";

/// The ClickHouse side of delivery: the target's encoding plan, this session's stages, inserts, the presence
/// check and the fence, on one server or on every node of a cluster. Not thread-safe; one per relay.
///
/// The fence: a session inserts only through its own stage on the node written to, a Null-engine table shaped like
/// the target with a materialized view that forwards every block into the target. A stage is created while the
/// session holds its owner lock (at Open(), or later by Use(), which then asks the caller to confirm the session is
/// still alive before anything is inserted), and never again under that name. Dropping it is the fence:
/// ClickHouse makes DROP TABLE wait for every insert that has already opened the table, and an insert that opens it
/// later fails with "table doesn't exist". So once Fence(owner, target) returns, no insert of that owner into that
/// target is running or can ever land, whatever its link speed or queueing, and a presence check there tells the
/// final truth.
///
/// On a cluster (docs/cluster.md) each claim goes to one node's shard-local table, named in its record before any
/// row is sent; the fence and the presence check of an in-doubt record run on that node, so a record waits for its
/// node while the other shards go on. Nodes that failed are left out until a probe (every few seconds, with a
/// short timeout) finds them answering again.
class ClickHouseSink {
public:
    /// `probe`: the relay's test seam (it must outlive the sink).
    explicit ClickHouseSink(const Config& config, const Probe& probe = kNoProbe);
    ~ClickHouseSink();
    ClickHouseSink(const ClickHouseSink&) = delete;
    ClickHouseSink& operator=(const ClickHouseSink&) = delete;

    /// True when delivering to a cluster (CLICKHOUSE_CLUSTER with CLICKHOUSE_SHARDS).
    bool Clustered() const noexcept { return clustered_; }

    /// Reads the target table's columns, plans the encoding and creates the stage of session (`outbox_id`, `owner`)
    /// on the server, or on every node of a cluster not known to be down. Throws ConfigError when the target is
    /// missing or unusable, TransientError when no node answers.
    void Open(const std::string& outbox_id, int owner);
    /// True after a successful Open().
    bool IsOpen() const noexcept { return encoder_.has_value() && open_; }
    /// Forgets the plan and the stage names (the stages themselves are left for the fence).
    void Reset() noexcept;

    /// The node the next claim goes to: on a cluster the next shard in turn, its first replica not known to be down
    /// (kOneServer without a cluster). Throws TransientError when no node of the cluster answers.
    std::string ChooseNode();
    /// Sends and looks up the next rows for a record of `target`: its node (kAnyNode: a node chosen now), looked up
    /// there (kAnyNode: on every node, each of which must be reachable and swept). Creates this session's stage on
    /// that node when it has none, then calls `confirm_session` (which must throw unless the session still holds
    /// its owner lock) before anything is inserted through it.
    void Use(const std::string& target, const std::function<void()>& confirm_session);

    /// Encodes `rows` and inserts them through the stage. Rows the target column cannot represent move to `dead`
    /// (with the reason) before anything is sent; the rest stay in `rows`. Throws like clickhouse::Client::Insert.
    void Insert(std::vector<PendingRow>& rows, std::vector<PendingRow>& dead);
    /// The rows whose event_id is not in the target table (of the node, or of every node, that Use() chose).
    /// Queries are bounded in size (at most ~128 KiB of SQL each, so never near max_query_size) and in cost: they
    /// look up the rows' exact event times, which lead the table's sort key, so the cost follows the rows checked,
    /// not the table's size or the batch's time span.
    std::vector<PendingRow> Missing(const std::vector<PendingRow>& rows);

    /// Drops every stage of `owner` (whose PostgreSQL lock the caller holds) on the node of `target` (kAnyNode:
    /// on every node): afterwards no insert of that owner there is running and none can start. Throws when a node
    /// does not answer (the caller leaves the owner's records of that target for a later pass).
    void Fence(int owner, const std::string& target);
    /// False when `target`'s node (kAnyNode: any node) is known to be down and its next probe is not due or fails.
    bool Reachable(const std::string& target);
    /// Leaves `node` out until a probe finds it answering (after a failure `why` of a request to it; the sink marks
    /// its own requests' failures).
    void MarkDown(const std::string& node, const std::string& why);
    /// True when `e`, raised by a request to a node, is about that node (unreachable, timed out, in doubt, a
    /// transient code), not about the rows: on a cluster its records wait for it while other nodes take the claims.
    static bool NodeFailure(const Error& e);
    /// The node of the last Use() (for logs and MarkDown()).
    const std::string& CurrentNode() const noexcept { return current_; }

    /// Owners that have a stage under this outbox's id, per reachable node (live ones among them). A node that does
    /// not answer is marked down and left out.
    std::map<std::string, std::set<int>> StagedOwners();
    /// Notes that every dead owner staged on `node` is fenced (recovery's sweep of this session).
    void Swept(const std::string& node);
    /// Drops this session's own stages (at a clean stop, with nothing in flight). Never throws.
    void DropOwnStage() noexcept;
    /// GET /ping of CLICKHOUSE_URI's server.
    void Ping() { main_.Ping(); }
    /// The column list the encoder writes, for logs.
    std::string ColumnList() const { return encoder_ ? encoder_->ColumnList() : std::string(); }
    /// The server's version text.
    std::string ServerVersion() { return main_.Version().text; }

private:
    struct Node;
    Node* Find(const std::string& name);
    Node& At(const std::string& name);
    /// Runs a request to `node`; a failure about the node marks it down.
    template <typename F>
    auto Call(Node& node, F&& request) -> decltype(request());
    std::string Prefix() const;
    std::vector<std::string> StageTables(Node& node, const std::string& name_prefix);
    void CreateStage(Node& node);
    void Drop(Node& node, const std::string& table);
    void FenceOn(Node& node, int owner);
    std::string Qualified(const std::string& table) const;
    void PresentOn(Node& node, const std::vector<PendingRow>& rows, std::unordered_set<std::string>& present);

    const Config& config_;
    const Probe& probe_;
    bool clustered_;
    std::string table_;        // the table rows are inserted into: <table>, or <table>_local on a cluster
    clickhouse::Client main_;  // CLICKHOUSE_URI's server: the plan, ping, version
    std::vector<Node> nodes_;  // the one server, or every node of CLICKHOUSE_SHARDS in shard order
    std::vector<std::vector<std::size_t>> shards_;  // indexes into nodes_, per shard
    std::optional<clickhouse::RowBinaryEncoder> encoder_;
    std::string stored_;  // the target's stored columns, the stage view's select list
    std::string outbox_id_;
    int owner_{0};
    bool open_{false};
    std::size_t next_shard_{0};
    std::string current_;       // the node of the last Use()
    bool everywhere_{false};    // the last Use() looks rows up on every node
    std::uint64_t send_seq_{0};
};

}  // namespace eventlog::relay::detail
