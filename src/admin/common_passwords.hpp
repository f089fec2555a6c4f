#pragma once

#include <string_view>

namespace eventlog::admin::detail {

/// The committed list of common passwords: lower case, one a line (src/admin/common_passwords.cpp).
std::string_view CommonPasswords();

}  // namespace eventlog::admin::detail
