// Administrators' passwords without a server: the rules (each refusal names its rule), the argon2id hash and its
// verification, and the login's two-step hashing (HashWithSetting) agreeing with the stored hash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/admin/administrators.hpp>
#include <eventlog/admin/password.hpp>
#include <eventlog/core/error.hpp>
#include <string>

#include "admin/common_passwords.hpp"

namespace eventlog::admin {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

/// The message of the InvalidInputError that CheckPassword throws, "" when it accepts the password.
std::string Refusal(std::string_view password, std::string_view username = "alice") {
    try {
        CheckPassword(password, username);
        return "";
    } catch (const InvalidInputError& e) {
        EXPECT_EQ(e.Field(), "password");
        return e.what();
    }
}

TEST(AdminPasswordRules, EachRefusalNamesItsRule) {
    EXPECT_THAT(Refusal("Xy7#short"), HasSubstr("too short: expected at least 10 characters"));
    EXPECT_THAT(Refusal(std::string(1025, 'a') + "B1"), HasSubstr("too long"));
    EXPECT_THAT(Refusal("12345678901234"), HasSubstr("entirely numeric"));
    EXPECT_THAT(Refusal("password123"), HasSubstr("too common"));
    EXPECT_THAT(Refusal("QWERTYUIOP"), HasSubstr("too common"));  // the list ignores case
    EXPECT_THAT(Refusal("administrator", "root"), HasSubstr("too common"));
    EXPECT_THAT(Refusal("Margaret.Hamilton", "margaret.hamilton"), HasSubstr("too similar to the username"));
    EXPECT_THAT(Refusal("my-Margaret-1969", "margaret"), HasSubstr("too similar to the username"));
}

TEST(AdminPasswordRules, AGoodPasswordPasses) {
    EXPECT_EQ(Refusal("correct horse battery staple"), "");
    EXPECT_EQ(Refusal("Tr0ub4dor&3x"), "");
    // A short username is not searched for inside the password (every password would contain "a").
    EXPECT_EQ(Refusal("a long passphrase", "a"), "");
}

TEST(AdminPasswordRules, LengthCountsCharactersNotBytes) {
    // Nine characters of two bytes each: 18 bytes, still too short.
    EXPECT_THAT(Refusal("ééééééééé"), HasSubstr("too short"));
    EXPECT_EQ(Refusal("éééééééééé"), "");
}

TEST(AdminPasswordRules, TheListHasAFewHundredLowerCaseEntries) {
    const std::string_view list = detail::CommonPasswords();
    int entries = 0;
    for (std::size_t start = 0; start < list.size();) {
        auto end = list.find('\n', start);
        if (end == std::string_view::npos) end = list.size();
        const auto entry = list.substr(start, end - start);
        if (!entry.empty()) {
            ++entries;
            for (const char c : entry) EXPECT_FALSE(c >= 'A' && c <= 'Z') << entry;
        }
        start = end + 1;
    }
    EXPECT_GE(entries, 300);
}

TEST(AdminPasswordHash, IsArgon2idVerifiesAndSaltsEachHash) {
    const std::string password = "correct horse battery staple";
    const std::string first = HashPassword(password);
    const std::string second = HashPassword(password);
    EXPECT_THAT(first, StartsWith("$argon2id$v=19$m=19456,t=2,p=1$"));
    EXPECT_NE(first, second);  // a fresh salt each time
    EXPECT_NE(SettingOf(first), SettingOf(second));
    EXPECT_TRUE(VerifyPassword(password, first));
    EXPECT_TRUE(VerifyPassword(password, second));
    EXPECT_FALSE(VerifyPassword("correct horse battery stapler", first));
    EXPECT_FALSE(VerifyPassword("", first));
    EXPECT_FALSE(VerifyPassword(password, "$argon2i$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA"));
    EXPECT_FALSE(VerifyPassword(password, "not a hash"));
}

TEST(AdminPasswordHash, HashingWithTheStoredSettingReproducesTheStoredHashOnlyForTheRightPassword) {
    const std::string stored = HashPassword("correct horse battery staple");
    const auto right = HashWithSetting("correct horse battery staple", SettingOf(stored));
    ASSERT_TRUE(right.has_value());
    EXPECT_EQ(*right, stored);
    const auto wrong = HashWithSetting("Correct horse battery staple", SettingOf(stored));
    ASSERT_TRUE(wrong.has_value());
    EXPECT_NE(*wrong, stored);
    EXPECT_TRUE(HashWithSetting("anything at all", DummySetting()).has_value());
}

TEST(AdminPasswordHash, AForgedSettingIsRefusedBeforeAnyWork) {
    for (const std::string_view setting : {
             "",
             "$argon2i$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA",     // not argon2id
             "$argon2id$v=16$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA",    // old version
             "$argon2id$v=19$m=4194304,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA",  // 4 GiB
             "$argon2id$v=19$m=19456,t=1000,p=1$AAAAAAAAAAAAAAAAAAAAAA",
             "$argon2id$v=19$m=19456,t=2,p=1$AAAA",                    // 3 bytes of salt
             "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAA!",  // not base64
             "$argon2id$v=19$m=19456,t=2$AAAAAAAAAAAAAAAAAAAAAA",
         }) {
        EXPECT_FALSE(HashWithSetting("correct horse battery staple", setting).has_value()) << setting;
    }
}

TEST(AdminUsername, DjangosCharactersOnly) {
    EXPECT_NO_THROW(CheckUsername("ada.lovelace+ops@example-1_x"));
    EXPECT_NO_THROW(CheckUsername(std::string(150, 'a')));
    for (const std::string& bad : {std::string(), std::string(151, 'a'), std::string("with space"),
                                   std::string("semi;colon"), std::string("new\nline"), std::string("é")}) {
        try {
            CheckUsername(bad);
            ADD_FAILURE() << "accepted " << bad;
        } catch (const InvalidInputError& e) {
            EXPECT_EQ(e.Field(), "username");
            EXPECT_THAT(e.what(), HasSubstr("expected 1 to 150 letters, digits or @.+-_"));
        }
    }
}

}  // namespace
}  // namespace eventlog::admin
