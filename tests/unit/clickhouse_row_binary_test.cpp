#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/clickhouse/row_binary.hpp>
#include <eventlog/core/error.hpp>
#include <string>
#include <vector>

namespace eventlog::clickhouse {
namespace {

using ::testing::HasSubstr;

const Uuid kEventId = *Uuid::Parse("00112233-4455-6677-8899-aabbccddeeff");
const Uuid kBatchId = *Uuid::Parse("ffeeddcc-bbaa-9988-7766-554433221100");

// 2021-03-04 05:06:07.123456 UTC
constexpr std::int64_t kTime = 1614834367123456;

Event MakeEvent() {
    Event event;
    event.event_id = kEventId;
    event.event_type = "user_created";
    event.event_date_time_us = kTime;
    event.environment = "Local";
    event.event_context = R"({"a":1})";
    event.metadata_version = 2;
    event.trace_id = "";
    return event;
}

std::string Bytes(std::initializer_list<int> bytes) {
    std::string out;
    for (int b : bytes) out.push_back(static_cast<char>(b));
    return out;
}

std::string Hex(const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 15]);
    }
    return out;
}

// Encodes `event` into a one-column table `name type`.
std::string EncodeOne(const std::string& name, const std::string& type, const Event& event = MakeEvent()) {
    const auto encoder = RowBinaryEncoder::ForColumns({Column{name, type, ""}});
    std::string out;
    encoder.Append(event, kBatchId, out);
    return out;
}

template <typename E>
E ExpectThrows(const std::function<void()>& f) {
    try {
        f();
    } catch (const E& e) {
        return e;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception: " << e.what();
        throw;
    }
    ADD_FAILURE() << "no exception";
    throw std::logic_error("no exception");
}

TEST(RowBinaryTest, VarUInt) {
    std::string out;
    AppendVarUInt(0, out);
    AppendVarUInt(127, out);
    AppendVarUInt(128, out);
    AppendVarUInt(300, out);
    EXPECT_EQ(Hex(out), "007f8001ac02");
}

TEST(RowBinaryTest, UuidLayoutIsTwoLittleEndianHalves) {
    // Verified against ClickHouse 18.16: SELECT toUUID('00112233-4455-6677-8899-aabbccddeeff') FORMAT RowBinary.
    EXPECT_EQ(Hex(EncodeOne("event_id", "UUID")), "7766554433221100ffeeddccbbaa9988");
    EXPECT_EQ(Hex(EncodeOne("batch_id", "UUID")), "8899aabbccddeeff0011223344556677");
}

TEST(RowBinaryTest, UuidAsStringAndFixedString) {
    EXPECT_EQ(EncodeOne("event_id", "String"), Bytes({36}) + "00112233-4455-6677-8899-aabbccddeeff");
    EXPECT_EQ(Hex(EncodeOne("event_id", "FixedString(16)")), "00112233445566778899aabbccddeeff");
    EXPECT_THROW(RowBinaryEncoder::ForColumns({Column{"event_id", "FixedString(8)", ""}}), ConfigError);
}

TEST(RowBinaryTest, Strings) {
    EXPECT_EQ(EncodeOne("event_type", "String"), Bytes({12}) + "user_created");
    EXPECT_EQ(EncodeOne("event_type", "LowCardinality(String)"), Bytes({12}) + "user_created");
    EXPECT_EQ(EncodeOne("environment", "FixedString(8)"), std::string("Local\0\0\0", 8));
    EXPECT_EQ(EncodeOne("event_context", "String"), Bytes({7}) + R"({"a":1})");
    Event event = MakeEvent();
    event.event_context = std::string(200, 'x');
    EXPECT_EQ(EncodeOne("event_context", "String", event), Bytes({0xc8, 0x01}) + std::string(200, 'x'));
}

TEST(RowBinaryTest, FixedStringTooLongIsRejected) {
    Event event = MakeEvent();
    event.environment = "Production";
    const auto error = ExpectThrows<RejectedError>([&] { EncodeOne("environment", "FixedString(4)", event); });
    EXPECT_THAT(error.what(), HasSubstr("environment"));
    EXPECT_THAT(error.what(), HasSubstr("FixedString(4)"));
}

TEST(RowBinaryTest, NullableTraceId) {
    Event event = MakeEvent();
    EXPECT_EQ(EncodeOne("trace_id", "Nullable(String)", event), Bytes({1}));
    EXPECT_EQ(EncodeOne("trace_id", "LowCardinality(Nullable(String))", event), Bytes({1}));
    EXPECT_EQ(EncodeOne("trace_id", "String", event), Bytes({0}));
    event.trace_id = "abc";
    EXPECT_EQ(EncodeOne("trace_id", "Nullable(String)", event), Bytes({0, 3}) + "abc");
    EXPECT_EQ(EncodeOne("trace_id", "LowCardinality(Nullable(String))", event), Bytes({0, 3}) + "abc");
    // Other strings are never NULL, even when empty.
    event.event_type = "";
    EXPECT_EQ(EncodeOne("event_type", "Nullable(String)", event), Bytes({0, 0}));
    EXPECT_EQ(EncodeOne("metadata_version", "Nullable(UInt8)", event), Bytes({0, 2}));
}

TEST(RowBinaryTest, DateTimeTypes) {
    // 1614834367 = 0x6040 6ABF
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime")), "bf6a4060");
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime('UTC')")), "bf6a4060");
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime('Europe/Moscow')")), "bf6a4060");
    // 1614834367123456 = 0x0005BCAEECD2D000
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime64(6)")), "00d0d2ecaebc0500");
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime64(6, 'UTC')")), "00d0d2ecaebc0500");
    // 1614834367123 = 0x0177FBA0FA93
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime64(3, 'UTC')")), "93faa0fb77010000");
    // 1614834367123456000 = 0x16690B4D177C8000
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime64(9)")), "00807c174d0b6916");
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime64(0)")), "bf6a406000000000");
    // 2021-03-04 = day 18690 = 0x4902
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "Date")), "0249");
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "Date32")), "02490000");
}

TEST(RowBinaryTest, DateTimeBeforeEpochRoundsDown) {
    Event event = MakeEvent();
    event.event_date_time_us = -1;  // 1969-12-31 23:59:59.999999
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "DateTime64(3)", event)), "ffffffffffffffff");
    EXPECT_EQ(Hex(EncodeOne("event_date_time", "Date32", event)), "ffffffff");
    EXPECT_THROW(EncodeOne("event_date_time", "DateTime", event), RejectedError);
    EXPECT_THROW(EncodeOne("event_date_time", "Date", event), RejectedError);
}

TEST(RowBinaryTest, DateTimeOutOfRangeIsRejectedWithColumnAndValue) {
    Event event = MakeEvent();
    event.event_date_time_us = 7258118400000000;  // 2200-01-01 00:00:00 UTC
    const auto error = ExpectThrows<RejectedError>([&] { EncodeOne("event_date_time", "DateTime", event); });
    EXPECT_THAT(error.what(), HasSubstr("event_date_time: 2200-01-01 00:00:00.000000 is outside DateTime's range"));
    EXPECT_EQ(error.Kind(), ErrorKind::kRejected);
    EXPECT_THROW(EncodeOne("event_date_time", "Date", event), RejectedError);
    EXPECT_NO_THROW(EncodeOne("event_date_time", "DateTime64(6)", event));
    EXPECT_NO_THROW(EncodeOne("event_date_time", "Date32", event));
    event.event_date_time_us = 10413792000000000;  // 2300-01-01
    const auto error64 = ExpectThrows<RejectedError>([&] { EncodeOne("event_date_time", "DateTime64(9)", event); });
    EXPECT_THAT(error64.what(), HasSubstr("2300-01-01 00:00:00.000000 is outside DateTime64's range"));
    EXPECT_THROW(EncodeOne("event_date_time", "Date32", event), RejectedError);
}

TEST(RowBinaryTest, MetadataVersionIntegers) {
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "UInt8")), "02");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "UInt16")), "0200");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "UInt32")), "02000000");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "UInt64")), "0200000000000000");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Int8")), "02");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Int16")), "0200");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Int32")), "02000000");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Int64")), "0200000000000000");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Float32")), "00000040");
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Float64")), "0000000000000040");
    EXPECT_EQ(EncodeOne("metadata_version", "String"), Bytes({1}) + "2");
    Event event = MakeEvent();
    event.metadata_version = 1;
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "Bool", event)), "01");
}

TEST(RowBinaryTest, MetadataVersionRangeChecks) {
    Event event = MakeEvent();
    event.metadata_version = 256;
    const auto error = ExpectThrows<RejectedError>([&] { EncodeOne("metadata_version", "UInt8", event); });
    EXPECT_THAT(error.what(), HasSubstr("metadata_version: 256 is outside UInt8's range 0..255"));
    event.metadata_version = 128;
    EXPECT_THROW(EncodeOne("metadata_version", "Int8", event), RejectedError);
    event.metadata_version = 1ULL << 63;
    EXPECT_THROW(EncodeOne("metadata_version", "Int64", event), RejectedError);
    EXPECT_EQ(Hex(EncodeOne("metadata_version", "UInt64", event)), "0000000000000080");
    event.metadata_version = 2;
    EXPECT_THROW(EncodeOne("metadata_version", "Bool", event), RejectedError);
}

TEST(RowBinaryTest, FailedAppendRestoresOutput) {
    const auto encoder = RowBinaryEncoder::ForColumns({
        Column{"event_type", "String", ""},
        Column{"metadata_version", "UInt8", ""},
    });
    std::string out = "previous";
    Event event = MakeEvent();
    event.metadata_version = 1000;
    EXPECT_THROW(encoder.Append(event, kBatchId, out), RejectedError);
    EXPECT_EQ(out, "previous");
    event.metadata_version = 1;
    encoder.Append(event, kBatchId, out);
    EXPECT_EQ(out, "previous" + Bytes({12}) + "user_created" + Bytes({1}));
}

TEST(RowBinaryTest, PlanOmitsComputedAndDefaultedColumns) {
    const std::vector<Column> columns = {
        {"event_id", "UUID", ""},
        {"event_type", "LowCardinality(String)", ""},
        {"event_date_time", "DateTime64(6, 'UTC')", ""},
        {"environment", "LowCardinality(String)", ""},
        {"event_context", "String", ""},
        {"metadata_version", "UInt64", "DEFAULT"},
        {"inserted_at", "DateTime", "DEFAULT"},
        {"check", "UInt8", "MATERIALIZED"},
        {"date", "Date", "ALIAS"},
        {"trace_id", "String", "MATERIALIZED"},
        {"batch_id", "UUID", ""},
    };
    const auto encoder = RowBinaryEncoder::ForColumns(columns);
    EXPECT_EQ(encoder.ColumnList(),
              "(`event_id`, `event_type`, `event_date_time`, `environment`, `event_context`, `metadata_version`, "
              "`batch_id`)");
    EXPECT_TRUE(encoder.Encodes("batch_id"));
    EXPECT_FALSE(encoder.Encodes("trace_id"));
    EXPECT_FALSE(encoder.Encodes("inserted_at"));

    std::string out;
    encoder.Append(MakeEvent(), kBatchId, out);
    std::string expected;
    AppendUuid(kEventId, expected);
    expected += Bytes({12}) + "user_created";
    expected += Bytes({0x00, 0xd0, 0xd2, 0xec, 0xae, 0xbc, 0x05, 0x00});
    expected += Bytes({5}) + "Local";
    expected += Bytes({7}) + R"({"a":1})";
    expected += Bytes({2, 0, 0, 0, 0, 0, 0, 0});
    AppendUuid(kBatchId, expected);
    EXPECT_EQ(Hex(out), Hex(expected));
}

TEST(RowBinaryTest, ColumnWithoutDefaultOrSourceIsLeftToTheServer) {
    // ClickHouse fills an omitted column without DEFAULT with its type's default, so it must not stop delivery.
    const auto encoder =
        RowBinaryEncoder::ForColumns({Column{"event_type", "String", ""}, Column{"tenant", "String", ""}});
    EXPECT_EQ(encoder.ColumnList(), "(`event_type`)");
}

TEST(RowBinaryTest, EventTimeLiteralMatchesTheStoredValue) {
    const std::int64_t micros = 1'700'000'000'123'456;
    EXPECT_EQ(RowBinaryEncoder::ForColumns({Column{"event_date_time", "DateTime('UTC')", ""}}).EventTimeLiteral(micros),
              "1700000000");
    EXPECT_EQ(
        RowBinaryEncoder::ForColumns({Column{"event_date_time", "DateTime64(6, 'UTC')", ""}}).EventTimeLiteral(micros),
        "'2023-11-14 22:13:20.123456'");
    EXPECT_EQ(RowBinaryEncoder::ForColumns({Column{"event_date_time", "DateTime64(3)", ""}}).EventTimeLiteral(micros),
              "'2023-11-14 22:13:20.123'");
    // Outside the column's range the row is never stored, so there is nothing to look for.
    EXPECT_EQ(RowBinaryEncoder::ForColumns({Column{"event_date_time", "DateTime", ""}}).EventTimeLiteral(-1),
              std::nullopt);
    EXPECT_EQ(RowBinaryEncoder::ForColumns({Column{"event_type", "String", ""}}).EventTimeLiteral(micros),
              std::nullopt);
}

TEST(RowBinaryTest, UnsupportedTypeIsConfigErrorNamingColumnAndType) {
    const auto error = ExpectThrows<ConfigError>([] {
        RowBinaryEncoder::ForColumns({Column{"event_type", "Enum8('a' = 1)", ""}});
    });
    EXPECT_THAT(error.what(), HasSubstr("`event_type`"));
    EXPECT_THAT(error.what(), HasSubstr("Enum8('a' = 1)"));
    EXPECT_THROW(RowBinaryEncoder::ForColumns({Column{"event_date_time", "String", ""}}), ConfigError);
    EXPECT_THROW(RowBinaryEncoder::ForColumns({Column{"event_id", "UInt64", ""}}), ConfigError);
    EXPECT_THROW(RowBinaryEncoder::ForColumns({Column{"event_date_time", "DateTime64(10)", ""}}), ConfigError);
    EXPECT_THROW(RowBinaryEncoder::ForColumns({Column{"trace_id", "Nullable(Nullable(String))", ""}}), ConfigError);
}

TEST(RowBinaryTest, EncoderIsCopyable) {
    const auto encoder = RowBinaryEncoder::ForColumns({Column{"event_type", "String", ""}});
    const RowBinaryEncoder copy = encoder;  // NOLINT(performance-unnecessary-copy-initialization)
    std::string a;
    std::string b;
    encoder.Append(MakeEvent(), kBatchId, a);
    copy.Append(MakeEvent(), kBatchId, b);
    EXPECT_EQ(a, b);
    EXPECT_EQ(copy.ColumnList(), "(`event_type`)");
}

}  // namespace
}  // namespace eventlog::clickhouse
