#include "relay/detail/clickhouse_sink.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <eventlog/clickhouse/errors.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/log.hpp>
#include <sstream>
#include <unordered_set>

namespace eventlog::relay::detail {
namespace {

constexpr std::string_view kStagePrefix = "eventlog_stage_";
/// Bound on one presence query's SQL text; ClickHouse's default max_query_size is 262,144 bytes.
constexpr std::size_t kMaxPresenceQueryBytes = std::size_t{128} * 1024;
using Clock = std::chrono::steady_clock;
/// A cluster's node that failed is left out for kProbeInterval, then probed (GET /ping) within kProbeTimeout twice
/// over (connect, then answer); each failed probe doubles the wait, up to kProbeIntervalMax. A frozen node costs the
/// relay at most a probe's second, a few times a minute.
constexpr std::chrono::milliseconds kProbeInterval{5000};
constexpr std::chrono::milliseconds kProbeIntervalMax{30'000};
constexpr std::chrono::milliseconds kProbeTimeout{500};

std::string RandomNonce() {
    const std::string id = Uuid::Random().ToString();
    return id.substr(0, 8);
}

clickhouse::ClientOptions NodeOptions(const ClickHouseConfig& config, const std::string& node) {
    auto options = clickhouse::OptionsFrom(config);
    if (!node.empty()) options.base_url = config.protocol + "://" + node;
    return options;
}

clickhouse::ClientOptions ProbeOptions(const ClickHouseConfig& config, const std::string& node) {
    auto options = NodeOptions(config, node);
    options.connect_timeout = kProbeTimeout;
    options.send_receive_timeout = kProbeTimeout;
    return options;
}

}  // namespace

struct ClickHouseSink::Node {
    std::string name;  // "host:port" of CLICKHOUSE_SHARDS (kOneServer without a cluster)
    clickhouse::Client client;
    clickhouse::Client probe;  // short timeouts: is it back?
    std::string stage;         // this session's stage there ("": none yet)
    bool swept{false};         // this session's recovery fenced every dead owner staged there
    std::optional<Clock::time_point> down_until;  // left out until then, then probed
    int failed_probes{0};
};

bool ClickHouseSink::NodeFailure(const Error& e) {
    if (e.Kind() == ErrorKind::kInDoubt) return true;
    if (e.Kind() != ErrorKind::kTransient) return false;
    // A transport failure (refused, reset, timed out) or an answer without a ClickHouse code (a proxy's 5xx/429), or a
    // code classified transient: about the node. A code the relay does not know is left to the retry policy, which
    // bisects and may dead-letter (it may be about the rows).
    if (e.Source() != ErrorSource::kClickHouse || e.Code().empty() || e.Code().rfind("HTTP", 0) == 0) return true;
    int code = 0;
    const auto [p, ec] = std::from_chars(e.Code().data(), e.Code().data() + e.Code().size(), code);
    return ec == std::errc() && !clickhouse::ServerErrorName(code).empty();
}

ClickHouseSink::ClickHouseSink(const Config& config, const Probe& probe)
    : config_(config),
      probe_(probe),
      clustered_(!config.clickhouse.cluster.empty()),
      table_(clustered_ ? config.clickhouse.table + "_local" : config.clickhouse.table),
      main_(clickhouse::OptionsFrom(config.clickhouse)) {
    if (clustered_ && config.clickhouse.shards.empty()) {
        throw ConfigError(
            "CLICKHOUSE_SHARDS: required with CLICKHOUSE_CLUSTER: the relay writes each claim into one node's "
            "shard-local table and needs every node's HTTP address, e.g. h1:8123,h2:8123;h3:8123,h4:8123 "
            "(docs/cluster.md)");
    }
    const auto add = [&](const std::string& name) {
        nodes_.push_back(Node{name, clickhouse::Client(NodeOptions(config.clickhouse, name)),
                              clickhouse::Client(ProbeOptions(config.clickhouse, name)), {}, false, std::nullopt, 0});
        return nodes_.size() - 1;
    };
    if (!clustered_) {
        shards_.push_back({add(kOneServer)});
        return;
    }
    for (const auto& replicas : config.clickhouse.shards) {
        shards_.emplace_back();
        for (const auto& name : replicas) shards_.back().push_back(add(name));
    }
}

ClickHouseSink::~ClickHouseSink() = default;

ClickHouseSink::Node* ClickHouseSink::Find(const std::string& name) {
    for (auto& node : nodes_) {
        if (node.name == name) return &node;
    }
    return nullptr;
}

ClickHouseSink::Node& ClickHouseSink::At(const std::string& name) {
    if (Node* node = Find(name)) return *node;
    throw ConfigError(fmt::format("clickhouse: a delivery record names node '{}', which is not in CLICKHOUSE_SHARDS "
                                  "(a node's entry is its identity: change it only with nothing in flight)",
                                  name));
}

template <typename F>
auto ClickHouseSink::Call(Node& node, F&& request) -> decltype(request()) {
    try {
        return request();
    } catch (const Error& e) {
        if (clustered_ && NodeFailure(e)) MarkDown(node.name, e.what());
        throw;
    }
}

std::string ClickHouseSink::Qualified(const std::string& table) const {
    return clickhouse::QuoteIdentifier(config_.clickhouse.database) + "." + clickhouse::QuoteIdentifier(table);
}

std::string ClickHouseSink::Prefix() const { return std::string(kStagePrefix) + outbox_id_ + "_"; }

void ClickHouseSink::Reset() noexcept {
    encoder_.reset();
    open_ = false;
    stored_.clear();
    current_.clear();
    everywhere_ = false;
    for (auto& node : nodes_) {
        node.stage.clear();
        node.swept = false;
    }
}

void ClickHouseSink::Open(const std::string& outbox_id, int owner) {
    Reset();
    outbox_id_ = outbox_id;
    owner_ = owner;
    // The plan, from the first node that answers: on a cluster every node has the same table (ON CLUSTER).
    Node* planned = nullptr;
    std::vector<clickhouse::Column> columns;
    for (auto& node : nodes_) {
        if (!Reachable(node.name)) continue;
        try {
            columns = Call(node, [&] { return node.client.DescribeTable(config_.clickhouse.database, table_); });
            planned = &node;
            break;
        } catch (const Error& e) {
            if (!clustered_ || !NodeFailure(e)) throw;
        }
    }
    if (planned == nullptr) {
        throw TransientError("clickhouse: no node of the cluster answers (CLICKHOUSE_SHARDS); delivery waits for one",
                             false);
    }
    const bool has_event_id =
        std::any_of(columns.begin(), columns.end(), [](const auto& c) { return c.name == "event_id"; });
    if (!has_event_id) {
        throw ConfigError(
            fmt::format("clickhouse: table {}.{} has no event_id column; the relay needs it to "
                        "deliver exactly once",
                        config_.clickhouse.database, table_));
    }
    encoder_.emplace(clickhouse::RowBinaryEncoder::ForColumns(columns));
    // The stage's view names every stored column: a view's block reaches the target as it is, without defaults
    // added (18.16).
    for (const auto& c : columns) {
        if (c.default_kind == "ALIAS" || c.default_kind == "EPHEMERAL") continue;
        stored_ += (stored_.empty() ? "" : ", ") + clickhouse::QuoteIdentifier(c.name);
    }
    // Stages now, while the owner lock is fresh, on every node that answers; a node that comes back later gets one
    // from Use().
    std::string stages;
    for (auto& node : nodes_) {
        if (!Reachable(node.name)) continue;
        try {
            CreateStage(node);
            stages += (stages.empty() ? "" : ", ") + (clustered_ ? node.name + " " : std::string()) + node.stage;
        } catch (const Error& e) {
            if (!clustered_ || !NodeFailure(e)) throw;
        }
    }
    if (stages.empty()) {
        throw TransientError("clickhouse: no node of the cluster answers (CLICKHOUSE_SHARDS); delivery waits for one",
                             false);
    }
    open_ = true;
    // The target's own materialized views run for the rows the stage's view pushes into it only where the server
    // cascades views (not 18.16): said by name at every session start (docs/delivery.md).
    if (auto views = planned->client.DependentViews(config_.clickhouse.database, table_);
        !views.empty() &&
        !planned->client.ViewsCascade(config_.clickhouse.database, "eventlog_stage_probe_" + RandomNonce())) {
        std::string names;
        for (const auto& v : views) names += (names.empty() ? "" : ", ") + v;
        log::Warning("target_views_not_run",
                     {{"views", names},
                      {"server_version", planned->client.Version().text},
                      {"hint", std::string("this server does not run a table's materialized views for rows a view "
                                           "pushes into it, and the relay delivers through one (its stage): these "
                                           "views do not see delivered events (docs/delivery.md)")}});
    }
    log::Info("relay_target", {{"table", config_.clickhouse.database + "." + table_},
                               {"columns", encoder_->ColumnList()},
                               {"stage", stages},
                               {"server_version", planned->client.Version().text}});
}

void ClickHouseSink::CreateStage(Node& node) {
    const std::string stage = fmt::format("{}{}_{}", Prefix(), owner_, RandomNonce());
    const std::string target = Qualified(table_);
    // Shaped like the target (DEFAULT and MATERIALIZED expressions included, so they are computed exactly as a
    // direct insert would); the view forwards each inserted block into the target within the same INSERT.
    Call(node, [&] {
        node.client.Execute(fmt::format("CREATE TABLE {} AS {} ENGINE = Null", Qualified(stage), target));
        node.client.Execute(fmt::format("CREATE MATERIALIZED VIEW {} TO {} AS SELECT {} FROM {}",
                                        Qualified(stage + "_mv"), target, stored_, Qualified(stage)));
    });
    node.stage = stage;
}

std::string ClickHouseSink::ChooseNode() {
    if (!clustered_) return kOneServer;
    for (std::size_t i = 0; i < shards_.size(); ++i) {
        const std::size_t shard = (next_shard_ + i) % shards_.size();
        for (const std::size_t n : shards_[shard]) {
            if (Reachable(nodes_[n].name)) {
                next_shard_ = shard + 1;
                return nodes_[n].name;
            }
        }
    }
    throw TransientError("clickhouse: no node of the cluster answers (CLICKHOUSE_SHARDS); delivery waits for one",
                         false);
}

void ClickHouseSink::Use(const std::string& target, const std::function<void()>& confirm_session) {
    everywhere_ = clustered_ && target == kAnyNode;
    current_ = everywhere_ ? ChooseNode() : target;
    Node& node = At(current_);
    if (node.stage.empty()) {
        if (!IsOpen()) throw TransientError("clickhouse: the session's stage is not open", false);
        CreateStage(node);
        // The stage exists before the session is seen alive: a recovery that takes the owner lock after this (the
        // only way to fence this owner) finds the stage and drops it.
        confirm_session();
    }
}

void ClickHouseSink::Insert(std::vector<PendingRow>& rows, std::vector<PendingRow>& dead) {
    Node* node = Find(current_);
    if (!IsOpen() || node == nullptr || node->stage.empty()) {
        throw TransientError("clickhouse: the session's stage is not open", false);
    }
    std::string body;
    body.reserve(rows.size() * 384);
    std::vector<PendingRow> sendable;
    sendable.reserve(rows.size());
    for (auto& r : rows) {
        try {
            encoder_->Append(r.event, r.batch_id, body);
            sendable.push_back(std::move(r));
        } catch (const RejectedError& e) {
            // Unrepresentable in the target column: dead-letter with the reason, never send it wrong.
            log::Warning("event_unencodable",
                         {{"event_id", r.event.event_id.ToString()}, {"error", std::string(e.what())}});
            r.attempts = std::max(r.attempts, 1);
            r.error = e.what();
            dead.push_back(std::move(r));
        }
    }
    rows = std::move(sendable);
    if (rows.empty()) return;
    clickhouse::InsertOptions options;
    options.query_id = fmt::format("{}-{}", rows.front().batch_id.ToString(), ++send_seq_);
    if (clustered_) options.insert_quorum = config_.clickhouse.insert_quorum;
    probe_.At("before_insert");
    Call(*node, [&] { node->client.Insert(node->stage, encoder_->ColumnList(), body, options); });
}

std::vector<PendingRow> ClickHouseSink::Missing(const std::vector<PendingRow>& rows) {
    if (rows.empty()) return {};
    if (!encoder_) {
        Node& node = nodes_.front();
        encoder_.emplace(clickhouse::RowBinaryEncoder::ForColumns(
            Call(node, [&] { return node.client.DescribeTable(config_.clickhouse.database, table_); })));
    }
    std::unordered_set<std::string> present;
    if (everywhere_) {
        // A record of any node (claimed while presence is checked first, after a failover): its rows may be on any
        // shard, sent there by a claim the failover lost, whose owner this session's recovery has fenced on every
        // node (swept). Every node must answer, or nothing is known.
        for (auto& node : nodes_) {
            if (!node.swept || !Reachable(node.name)) {
                throw TransientError(fmt::format("clickhouse: node {} of the cluster {} (a record claimed after a "
                                                 "failover is looked up on every node): it waits",
                                                 node.name, node.swept ? "does not answer" : "is not swept yet"),
                                     false);
            }
            PresentOn(node, rows, present);
        }
    } else {
        PresentOn(At(current_), rows, present);
    }
    std::vector<PendingRow> missing;
    for (const auto& r : rows) {
        if (!present.count(r.event.event_id.ToString())) missing.push_back(r);
    }
    return missing;
}

void ClickHouseSink::PresentOn(Node& node, const std::vector<PendingRow>& rows,
                               std::unordered_set<std::string>& present) {
    // A DateTime/DateTime64 event_date_time leads our table's sort key: look rows up by their exact times.
    const bool has_time = encoder_->EventTimeLiteral(0).has_value();
    const std::string target = Qualified(table_);
    const std::vector<std::pair<std::string, std::string>> settings = {
        {"max_execution_time",
         std::to_string(std::max<long long>(1, config_.clickhouse.send_receive_timeout.count() / 1000))},
        {"timeout_overflow_mode", "throw"}};
    std::size_t i = 0;
    while (i < rows.size()) {
        std::set<std::string> times;
        std::string ids;
        std::size_t bytes = 0;
        for (; i < rows.size() && bytes < kMaxPresenceQueryBytes; ++i) {
            const auto& event = rows[i].event;
            std::optional<std::string> time;
            if (has_time) {
                time = encoder_->EventTimeLiteral(event.event_date_time_us);
                if (!time) continue;  // outside the column's range: never stored, so missing
                if (times.insert(*time).second) bytes += time->size() + 1;
            }
            if (!ids.empty()) ids += ',';
            ids += '\'' + event.event_id.ToString() + '\'';
            bytes += 39;
        }
        if (ids.empty()) continue;
        std::string time_filter;
        if (has_time) {
            time_filter = "event_date_time IN (";
            for (const auto& t : times) {
                if (time_filter.back() != '(') time_filter += ',';
                time_filter += t;
            }
            time_filter += ") AND ";
        }
        probe_.At("before_presence_query");
        const std::string body = Call(node, [&] {
            return node.client.Query(
                fmt::format("SELECT DISTINCT toString(event_id) FROM {} WHERE {}event_id IN ({}) FORMAT TabSeparated",
                            target, time_filter, ids),
                settings);
        });
        std::istringstream lines(body);
        for (std::string line; std::getline(lines, line);) present.insert(line);
    }
}

std::vector<std::string> ClickHouseSink::StageTables(Node& node, const std::string& name_prefix) {
    const std::string body = Call(node, [&] {
        return node.client.Query(fmt::format(
            "SELECT name FROM system.tables WHERE database = {} AND substring(name, 1, {}) = {} FORMAT TabSeparated",
            clickhouse::QuoteString(config_.clickhouse.database), name_prefix.size(),
            clickhouse::QuoteString(name_prefix)));
    });
    std::vector<std::string> names;
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty()) names.push_back(line);
    }
    return names;
}

void ClickHouseSink::Drop(Node& node, const std::string& table) {
    // Modern servers (Atomic databases) drop lazily unless told to wait for the queries using the table.
    Call(node, [&] {
        const bool sync = node.client.Version().AtLeast(20, 5);
        node.client.Execute(fmt::format("DROP TABLE IF EXISTS {}{}", Qualified(table), sync ? " SYNC" : ""));
    });
}

void ClickHouseSink::FenceOn(Node& node, int owner) {
    auto tables = StageTables(node, Prefix() + std::to_string(owner) + "_");
    // The stages first (this is what waits for and then refuses inserts), then their views.
    std::stable_partition(tables.begin(), tables.end(),
                          [](const std::string& t) { return t.size() < 3 || t.compare(t.size() - 3, 3, "_mv") != 0; });
    for (const auto& t : tables) Drop(node, t);
    if (!tables.empty()) {
        log::Info("stage_fenced", clustered_ ? log::Fields{{"owner", static_cast<std::int64_t>(owner)}, {"node", node.name}}
                                             : log::Fields{{"owner", static_cast<std::int64_t>(owner)}});
    }
}

void ClickHouseSink::Fence(int owner, const std::string& target) {
    if (clustered_ && target == kAnyNode) {
        for (auto& node : nodes_) FenceOn(node, owner);
        return;
    }
    FenceOn(At(target), owner);
}

bool ClickHouseSink::Reachable(const std::string& target) {
    if (!clustered_) return true;
    if (target == kAnyNode) {
        return std::all_of(nodes_.begin(), nodes_.end(), [&](const Node& n) { return Reachable(n.name); });
    }
    Node* node = Find(target);
    if (node == nullptr) return false;
    if (!node->down_until) return true;
    if (Clock::now() < *node->down_until) return false;
    try {
        node->probe.Ping();
    } catch (const Error&) {
        node->failed_probes = std::min(node->failed_probes + 1, 16);
        node->down_until = Clock::now() + std::min<Clock::duration>(kProbeInterval * (1 << std::min(node->failed_probes, 3)),
                                                                    kProbeIntervalMax);
        return false;
    }
    node->down_until.reset();
    node->failed_probes = 0;
    log::Info("clickhouse_node_back", {{"node", node->name}});
    return true;
}

void ClickHouseSink::MarkDown(const std::string& name, const std::string& why) {
    Node* node = Find(name);
    if (!clustered_ || node == nullptr) return;
    if (!node->down_until) {
        log::Warning("clickhouse_node_down",
                     {{"node", name},
                      {"error", clickhouse::WithoutEndpoint(why)},
                      {"hint", std::string("left out of delivery until it answers again; records sent to it wait "
                                           "for it (docs/cluster.md)")}});
    }
    node->down_until = Clock::now() + kProbeInterval;
    node->swept = false;
}

std::map<std::string, std::set<int>> ClickHouseSink::StagedOwners() {
    const std::string prefix = Prefix();
    std::map<std::string, std::set<int>> staged;
    for (auto& node : nodes_) {
        if (!Reachable(node.name)) continue;
        std::vector<std::string> names;
        try {
            names = StageTables(node, prefix);
        } catch (const Error& e) {
            if (!clustered_ || !NodeFailure(e)) throw;
            continue;
        }
        auto& owners = staged[node.name];
        for (const auto& name : names) {
            int owner = 0;
            const char* begin = name.data() + prefix.size();
            const char* end = name.data() + name.size();
            auto [p, ec] = std::from_chars(begin, end, owner);
            if (ec == std::errc() && p != begin && p < end && *p == '_') owners.insert(owner);
        }
    }
    return staged;
}

void ClickHouseSink::Swept(const std::string& node) {
    if (Node* n = Find(node)) n->swept = true;
}

void ClickHouseSink::DropOwnStage() noexcept {
    for (auto& node : nodes_) {
        if (node.stage.empty()) continue;
        if (node.down_until) continue;  // left for the sweep of a later session: a frozen node would hold the stop
        try {
            Drop(node, node.stage);
            Drop(node, node.stage + "_mv");
        } catch (const Error& e) {
            log::Warning("stage_drop_failed", {{"stage", node.stage}, {"error", std::string(e.what())}});
        }
        node.stage.clear();
    }
}

}  // namespace eventlog::relay::detail
