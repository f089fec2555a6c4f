// The relay's span links to producers' spans (src/relay/producer_links.cpp).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "relay/detail/producer_links.hpp"

namespace eventlog::relay::detail {
namespace {

PendingRow Row(std::string trace_id, std::string span_id) {
    PendingRow row;
    row.event.trace_id = std::move(trace_id);
    row.event.span_id = std::move(span_id);
    return row;
}

std::int64_t CountOf(const tracing::SpanLink& link) {
    EXPECT_EQ(link.attributes.size(), 1u);
    EXPECT_EQ(link.attributes.at(0).first, "messaging.batch.message_count");
    return std::get<std::int64_t>(link.attributes.at(0).second);
}

const std::string kTrace = "4bf92f3577b34da6a3ce929d0e0e4736";

TEST(ProducerLinks, OneLinkPerDistinctProducerSpanWithItsEventCountInFirstSeenOrder) {
    const std::vector<PendingRow> rows = {Row(kTrace, "00f067aa0ba902b7"), Row(kTrace, "1111111111111111"),
                                          Row(kTrace, "00f067aa0ba902b7"), Row(kTrace, "00f067aa0ba902b7")};
    const auto out = LinkProducers(rows, 128);
    ASSERT_EQ(out.links.size(), 2u);
    EXPECT_EQ(out.dropped, 0u);
    EXPECT_EQ(tracing::ToHex(out.links[0].context.trace_id), kTrace);
    EXPECT_EQ(tracing::ToHex(out.links[0].context.span_id), "00f067aa0ba902b7");
    EXPECT_EQ(CountOf(out.links[0]), 3);
    EXPECT_EQ(tracing::ToHex(out.links[1].context.span_id), "1111111111111111");
    EXPECT_EQ(CountOf(out.links[1]), 1);
}

TEST(ProducerLinks, AnythingButAWellFormedContextIsNoLink) {
    const std::vector<PendingRow> rows = {
        Row("", ""),                               // untraced
        Row(kTrace, ""),                           // a trace id alone (a client's own, or before 0011)
        Row("client-chosen", "00f067aa0ba902b7"),  // not a W3C trace id
        Row(kTrace, "00F067AA0BA902B7"),           // upper case
        Row(kTrace, "0000000000000000"),           // all zero
        Row("00000000000000000000000000000000", "00f067aa0ba902b7"),
        Row(kTrace, "00f067aa0ba902b"),   // 15 digits
        Row(kTrace, "00f067aa0ba902bz"),  // not hex
    };
    const auto out = LinkProducers(rows, 128);
    EXPECT_TRUE(out.links.empty());
    EXPECT_EQ(out.dropped, 0u);
}

TEST(ProducerLinks, DistinctSpansBeyondTheCapAreCountedOnceAsDropped) {
    std::vector<PendingRow> rows;
    for (int i = 0; i < 200; ++i) {
        const std::string span = fmt::format("{:016x}", i + 1);
        rows.push_back(Row(kTrace, span));
        rows.push_back(Row(kTrace, span));  // a second event of the same span: one link, or one drop
    }
    const auto out = LinkProducers(rows, 128);
    ASSERT_EQ(out.links.size(), 128u);
    EXPECT_EQ(out.dropped, 72u);
    EXPECT_EQ(tracing::ToHex(out.links.back().context.span_id), fmt::format("{:016x}", 128));
    for (const auto& link : out.links) EXPECT_EQ(CountOf(link), 2);
}

}  // namespace
}  // namespace eventlog::relay::detail
