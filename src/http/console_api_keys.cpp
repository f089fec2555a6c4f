// The console's API keys (docs/admin-console.md): the list (never a hash), a form to create one (its token shown
// once, on the answer to the POST), and revocation behind a confirmation. The token is made by CreateApiKeyWith, as
// `eventlog apikey create` makes it; eventlog.console_api_key_create / _revoke (migration 0020) store and audit.
#include <fmt/format.h>

#include <eventlog/core/error.hpp>
#include <eventlog/http/api_keys.hpp>
#include <string>
#include <vector>

#include "http/console_internal.hpp"

namespace eventlog::http::console {
namespace {

constexpr std::array<std::string_view, 3> kScopes = {kScopeEventsWrite, kScopeEventsRead, kScopeUsersWrite};

/// The scope's form field id: "scope-events-write".
std::string ScopeId(std::string_view scope) {
    std::string out = "scope-" + std::string(scope);
    for (auto& c : out) {
        if (c == ':') c = '-';
    }
    return out;
}

/// A key name as an id attribute: letters, digits, '-' and '_' kept, every other byte as "-XX".
std::string NameId(std::string_view name) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (const char c : name) {
        const auto b = static_cast<unsigned char>(c);
        if (std::isalnum(b) || c == '_') {
            out.push_back(c);
        } else {
            out.push_back('-');
            out.push_back(kHex[b >> 4]);
            out.push_back(kHex[b & 0x0F]);
        }
    }
    return out;
}

std::string CreateForm(const SignedIn& who, std::string_view name, std::string_view error) {
    std::string out = "<section aria-labelledby=\"create-heading\"><h2 id=\"create-heading\">Create a key</h2>\n";
    if (!error.empty()) out += "<p class=\"error\" role=\"alert\" id=\"create-error\">" + HtmlEscape(error) + "</p>\n";
    out += "<form method=\"post\" action=\"/admin/api-keys/create/\" id=\"create-key\">" + CsrfInput(who) +
           "\n<label for=\"name\">Name</label><input type=\"text\" id=\"name\" name=\"name\" maxlength=\"200\" "
           "required value=\"" +
           HtmlEscape(name) + "\">\n<fieldset><legend>Scopes (none ticked: all three)</legend>\n";
    for (const auto scope : kScopes) {
        const std::string id = ScopeId(scope);
        out += fmt::format(
            "<div class=\"check\"><input type=\"checkbox\" id=\"{0}\" name=\"{0}\" value=\"{1}\"><label "
            "for=\"{0}\">{1}</label></div>\n",
            id, scope);
    }
    out += "</fieldset>\n<button type=\"submit\" id=\"create-submit\">Create key</button>\n</form>\n</section>\n";
    return out;
}

class ListHandler : public PageHandler {
public:
    using PageHandler::PageHandler;

    static Response Render(const Console& console, const SignedIn& who, std::string_view top, int status = 200,
                           std::string_view name = "", std::string_view error = "") {
        const auto r = InTransaction(console, [&](pg::Transaction& tx) {
            return tx.Exec(
                "SELECT name, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
                "coalesce(to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), ''), "
                "array_to_string(scopes, ', ') FROM eventlog.console_api_keys($1::bytea)",
                {who.token_hash});
        });
        std::string content = "<h1>API keys</h1>\n" + std::string(top);
        content += CreateForm(who, name, error);
        content += "<section aria-labelledby=\"keys-heading\"><h2 id=\"keys-heading\">Keys</h2>\n";
        if (r.Rows() == 0) {
            content += "<p id=\"no-keys\">No API keys yet.</p>\n";
        } else {
            content +=
                "<div class=\"scroll\" tabindex=\"0\"><table id=\"api-key-list\"><thead><tr><th "
                "scope=\"col\">Name</th><th "
                "scope=\"col\">Scopes</th><th scope=\"col\">Created (UTC)</th><th scope=\"col\">State</th><th "
                "scope=\"col\">Action</th></tr></thead><tbody>\n";
            for (int i = 0; i < r.Rows(); ++i) {
                const std::string name_text(r.Get(i, 0));
                const std::string id = NameId(name_text);
                const bool revoked = !r.Get(i, 2).empty();
                content += "<tr id=\"key-" + id + "\"><td>" + HtmlEscape(name_text) + "</td><td>" +
                           HtmlEscape(r.Get(i, 3)) + "</td><td>" + HtmlEscape(r.Get(i, 1)) + "</td><td>" +
                           (revoked ? "revoked " + HtmlEscape(r.Get(i, 2)) : std::string("active")) + "</td><td>";
                if (!revoked) {
                    content += "<form method=\"post\" action=\"/admin/api-keys/revoke/confirm/\">" + CsrfInput(who) +
                               "<input type=\"hidden\" name=\"name\" value=\"" + HtmlEscape(name_text) +
                               "\"><button type=\"submit\" class=\"danger\" id=\"revoke-" + id +
                               "\" aria-label=\"Revoke " + HtmlEscape(name_text) + "\">Revoke…</button></form>";
                }
                content += "</td></tr>\n";
            }
            content += "</tbody></table></div>\n";
        }
        content += "</section>\n";
        return Html(status, Page("API keys", content, &who, "/admin/api-keys/"));
    }

protected:
    Response Serve(const Request&, const SignedIn& who) override { return Render(Ctx(), who, ""); }
};

class CreateHandler : public ActionHandler {
public:
    using ActionHandler::ActionHandler;

protected:
    Response Act(const Request&, const SignedIn& who, const std::map<std::string, std::string>& form) override {
        const std::string name = Field(form, "name");
        std::vector<std::string> scopes;
        for (const auto scope : kScopes) {
            if (!Field(form, ScopeId(scope)).empty()) scopes.emplace_back(scope);
        }
        std::string token;
        try {
            token = InTransaction(Ctx(), [&](pg::Transaction& tx) {
                return CreateApiKeyWith(
                    Ctx().settings.secret_key, name, scopes,
                    [&](const std::string& key_name, const std::string& token_hash, const std::string& scope_array) {
                        return tx
                            .Exec("SELECT eventlog.console_api_key_create($1::bytea, $2, $3, $4::bytea, $5::text[])",
                                  {who.token_hash, who.origin.address, key_name, token_hash, scope_array})
                            .GetInt(0, 0);
                    });
            });
        } catch (const InvalidInputError& e) {
            std::string message = e.what();
            if (message.rfind("--name: ", 0) == 0) message = "Name: " + message.substr(8);
            if (message.rfind("--scope: ", 0) == 0) message = "Scopes: " + message.substr(9);
            return ListHandler::Render(Ctx(), who, "", 400, name, message);
        }
        const std::string top =
            "<section class=\"notice\" role=\"status\" aria-labelledby=\"token-heading\"><h2 "
            "id=\"token-heading\">Key “" +
            HtmlEscape(name) +
            "” created</h2>\n<p>Copy its token now: it is shown only this once (the server keeps only its "
            "HMAC).</p>\n<label for=\"new-token\">Token</label><input type=\"text\" id=\"new-token\" readonly "
            "value=\"" +
            HtmlEscape(token) + "\">\n</section>\n";
        return ListHandler::Render(Ctx(), who, top);
    }
};

class RevokeConfirmHandler : public ActionHandler {
public:
    using ActionHandler::ActionHandler;

protected:
    Response Act(const Request&, const SignedIn& who, const std::map<std::string, std::string>& form) override {
        const std::string name = Field(form, "name");
        const std::string content =
            "<h1>Confirm revoke</h1>\n<p>Revoke API key “<strong id=\"confirm-name\">" + HtmlEscape(name) +
            "</strong>”? Requests with its token are refused (401) from then on, on every server within seconds. A "
            "revoked key cannot be restored.</p>\n<form method=\"post\" action=\"/admin/api-keys/revoke/\">" +
            CsrfInput(who) + "<input type=\"hidden\" name=\"name\" value=\"" + HtmlEscape(name) +
            "\"><button type=\"submit\" class=\"danger\" id=\"confirm\">Yes, revoke</button> <a "
            "href=\"/admin/api-keys/\" id=\"cancel\">Cancel</a></form>\n";
        return Html(200, Page("Confirm revoke", content, &who, "/admin/api-keys/"));
    }
};

class RevokeHandler : public ActionHandler {
public:
    using ActionHandler::ActionHandler;

protected:
    Response Act(const Request&, const SignedIn& who, const std::map<std::string, std::string>& form) override {
        const std::string name = Field(form, "name");
        const bool revoked = InTransaction(Ctx(), [&](pg::Transaction& tx) {
            return tx.Exec("SELECT eventlog.console_api_key_revoke($1::bytea, $2, $3)",
                           {who.token_hash, who.origin.address, name})
                       .Get(0, 0) == "t";
        });
        const std::string top =
            revoked ? "<p role=\"status\" id=\"result\">Revoked API key “" + HtmlEscape(name) + "”.</p>\n"
                    : "<p class=\"error\" role=\"alert\" id=\"result\">There is no active API key “" +
                          HtmlEscape(name) + "”.</p>\n";
        return ListHandler::Render(Ctx(), who, top, revoked ? 200 : 404);
    }
};

}  // namespace

void AddApiKeyRoutes(Router& router, const std::shared_ptr<const Console>& console) {
    router.Add("GET", "/admin/api-keys/", std::make_shared<ListHandler>(console));
    router.Add("POST", "/admin/api-keys/create/", std::make_shared<CreateHandler>(console));
    router.Add("POST", "/admin/api-keys/revoke/confirm/", std::make_shared<RevokeConfirmHandler>(console));
    router.Add("POST", "/admin/api-keys/revoke/", std::make_shared<RevokeHandler>(console));
}

}  // namespace eventlog::http::console
