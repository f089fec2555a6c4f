// The console pages' pure helpers (src/http/console_internal.hpp): query-string encoding, cutting text at a UTF-8
// boundary, thousands separators. The pages themselves are tested over HTTP in console_pages_dbtest.cpp.
#include <gtest/gtest.h>

#include "http/console_internal.hpp"

namespace eventlog::http::console {
namespace {

TEST(ConsolePagesHelpersTest, UrlEncodeKeepsOnlyUnreservedCharacters) {
    EXPECT_EQ(UrlEncode("abc-XYZ_0.9~"), "abc-XYZ_0.9~");
    EXPECT_EQ(UrlEncode("a b&c=d/e?f#g%"), "a%20b%26c%3Dd%2Fe%3Ff%23g%25");
    EXPECT_EQ(UrlEncode("\"<script>\""), "%22%3Cscript%3E%22");
    EXPECT_EQ(UrlEncode("é"), "%C3%A9");
    EXPECT_EQ(ParseForm("q=" + UrlEncode("a+b & c=ü")).at("q"), "a+b & c=ü");  // round trip
}

TEST(ConsolePagesHelpersTest, ShortenCutsAtACharacterBoundaryAndSaysSo) {
    EXPECT_EQ(Shorten("short", 10), "short");
    EXPECT_EQ(Shorten("0123456789", 10), "0123456789");
    EXPECT_EQ(Shorten("0123456789x", 10), "0123456789…");
    // "é" is two bytes: a cut inside it moves back before it, never leaving half a character.
    EXPECT_EQ(Shorten("abcé", 4), "abc…");
    EXPECT_EQ(Shorten("€uro", 2), "…");
}

TEST(ConsolePagesHelpersTest, ThousandsGroupsDigitsByThree) {
    EXPECT_EQ(Thousands(0), "0");
    EXPECT_EQ(Thousands(999), "999");
    EXPECT_EQ(Thousands(1000), "1,000");
    EXPECT_EQ(Thousands(311296), "311,296");
    EXPECT_EQ(Thousands(1234567), "1,234,567");
    EXPECT_EQ(Thousands(-1234), "-1,234");
}

}  // namespace
}  // namespace eventlog::http::console
