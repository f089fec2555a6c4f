// Delivery to a ClickHouse cluster, the parts that need no server (issue 23, docs/cluster.md): the node list and
// which failures leave a claim waiting for its node.
#include <gtest/gtest.h>

#include <eventlog/clickhouse/errors.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>

#include "relay/detail/clickhouse_sink.hpp"

namespace eventlog {
namespace {

std::string ConfigErrorOf(const EnvMap& env) {
    try {
        LoadConfig(env);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "no error";
}

TEST(ClusterConfigTest, ShardsAreReplicaListsSeparatedBySemicolons) {
    const Config c = LoadConfig({{"CLICKHOUSE_CLUSTER", "events"},
                                 {"CLICKHOUSE_SHARDS", "10.0.0.1:8123,10.0.0.2:8124;ch-3.internal:8123;[::1]:9000"},
                                 {"CLICKHOUSE_INSERT_QUORUM", "2"}});
    ASSERT_EQ(c.clickhouse.shards.size(), 3u);
    EXPECT_EQ(c.clickhouse.shards[0], (std::vector<std::string>{"10.0.0.1:8123", "10.0.0.2:8124"}));
    EXPECT_EQ(c.clickhouse.shards[1], (std::vector<std::string>{"ch-3.internal:8123"}));
    EXPECT_EQ(c.clickhouse.shards[2], (std::vector<std::string>{"[::1]:9000"}));
    EXPECT_EQ(c.clickhouse.insert_quorum, 2);
    const Config one = LoadConfig({});
    EXPECT_TRUE(one.clickhouse.shards.empty());
    EXPECT_EQ(one.clickhouse.insert_quorum, 0);
}

TEST(ClusterConfigTest, ABadNodeListNamesTheVariableAndTheShape) {
    for (const std::string bad : {"h1", "h1:0", "h1:8123,", "h1:8123;;h2:8123", "h1:8123;", ":8123", "h1:80a",
                                  "user@h1:8123", "h1:8123/db", "::1:8123"}) {
        const std::string message = ConfigErrorOf({{"CLICKHOUSE_SHARDS", bad}});
        EXPECT_NE(message.find("CLICKHOUSE_SHARDS: expected the cluster's nodes as host:port"), std::string::npos)
            << bad << ": " << message;
    }
    EXPECT_NE(ConfigErrorOf({{"CLICKHOUSE_SHARDS", "h1:8123,h2:8123;h1:8123"}}).find("a node is listed twice"),
              std::string::npos);
    EXPECT_NE(ConfigErrorOf({{"CLICKHOUSE_INSERT_QUORUM", "-1"}}).find("CLICKHOUSE_INSERT_QUORUM"), std::string::npos);
}

TEST(ClusterConfigTest, TheRelayRefusesAClusterWithoutItsNodes) {
    const Config c = LoadConfig({{"CLICKHOUSE_CLUSTER", "events"}});
    try {
        relay::detail::ClickHouseSink sink(c);
        FAIL() << "a cluster without CLICKHOUSE_SHARDS was accepted";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("CLICKHOUSE_SHARDS: required with CLICKHOUSE_CLUSTER"), std::string::npos)
            << e.what();
    }
}

Error FromServer(int code, bool insert) {
    try {
        clickhouse::ThrowError(clickhouse::ClassifyServerError(code, insert), "Code: " + std::to_string(code),
                               std::to_string(code));
    } catch (const Error& e) {
        return e;
    }
    return Error(ErrorKind::kFatal, "not thrown");
}

TEST(ClusterNodeFailureTest, FailuresAboutTheNodeLeaveTheClaimWaitingForIt) {
    using relay::detail::ClickHouseSink;
    // Transport failures, in-doubt inserts, answers without a code and codes classified transient: about the node.
    EXPECT_TRUE(ClickHouseSink::NodeFailure(TransientError("clickhouse: connection refused")));
    EXPECT_TRUE(ClickHouseSink::NodeFailure(InDoubtError("insert outcome unknown: timed out")));
    for (int code : {209, 210, 225, 242, 252, 285, 286, 319, 999}) {
        EXPECT_TRUE(ClickHouseSink::NodeFailure(FromServer(code, true))) << code;
    }
    Error proxy = TransientError("HTTP 503");
    proxy.SetOrigin(ErrorSource::kClickHouse, "HTTP 503");
    EXPECT_TRUE(ClickHouseSink::NodeFailure(proxy));
    // Rejections, configuration errors and codes the relay does not know: the retry policy's (it may bisect and
    // dead-letter a row; waiting for the node would retry such a row forever).
    EXPECT_FALSE(ClickHouseSink::NodeFailure(FromServer(53, true)));
    EXPECT_FALSE(ClickHouseSink::NodeFailure(FromServer(60, true)));
    EXPECT_FALSE(ClickHouseSink::NodeFailure(FromServer(123456, true)));
    EXPECT_FALSE(ClickHouseSink::NodeFailure(RejectedError("unencodable")));
}

}  // namespace
}  // namespace eventlog
