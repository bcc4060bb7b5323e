// HTTP GET for OIDC discovery and JWKS documents, implemented with libcurl.
#include "gateway/identity/http_fetcher.h"

#include <curl/curl.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace pgward::identity {
namespace {

constexpr long kTimeoutMs = 5000;
constexpr size_t kMaxBodyBytes = 1 << 20;  // a JWKS is a few KiB; anything near 1 MiB is hostile

struct Body {
  std::string data;
  bool too_large = false;
};

size_t AppendBody(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* body = static_cast<Body*>(userdata);
  const size_t n = size * nmemb;
  if (body->data.size() + n > kMaxBodyBytes) {
    body->too_large = true;
    return 0;  // makes curl abort the transfer with CURLE_WRITE_ERROR
  }
  body->data.append(ptr, n);
  return n;
}

class CurlHttpFetcher : public HttpFetcher {
 public:
  explicit CurlHttpFetcher(std::string ca_file) : ca_file_(std::move(ca_file)) {
    // curl_global_init is not thread-safe on every build; do it once, before any handle exists.
    static const CURLcode kInit = curl_global_init(CURL_GLOBAL_DEFAULT);
    (void)kInit;
  }

  absl::StatusOr<std::string> Get(const std::string& url) override { return Perform("GET", url, nullptr); }

  absl::StatusOr<std::string> PostForm(const std::string& url, const std::string& form, const std::string& user,
                                       const std::string& password) override {
    const Post post{form, FormEncode(user) + ":" + FormEncode(password)};
    return Perform("POST", url, &post);
  }

 private:
  struct Post {
    const std::string& form;
    std::string credentials;  // user:password for Basic; never logged
  };

  // RFC 6749 2.3.1 / appendix B: application/x-www-form-urlencoded.
  static std::string FormEncode(const std::string& value) {
    std::string out;
    for (unsigned char c : value) {
      if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
        out.push_back(static_cast<char>(c));
      } else if (c == ' ') {
        out.push_back('+');
      } else {
        absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
      }
    }
    return out;
  }

  absl::StatusOr<std::string> Perform(const char* method, const std::string& url, const Post* post) {
    const bool https = absl::StartsWithIgnoreCase(url, "https://");
    if (!https && !absl::StartsWithIgnoreCase(url, "http://")) {
      return absl::InvalidArgumentError(absl::StrCat(method, " ", url, ": only http and https URLs are fetched"));
    }
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
    Body body;
    char error[CURL_ERROR_SIZE] = {0};
    CURL* h = curl.get();
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // no SIGALRM from resolver timeouts in a threaded server
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, kTimeoutMs);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, kTimeoutMs);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    // A redirect may not leave http(s), and may not downgrade an https fetch to http.
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kMaxBodyBytes));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!ca_file_.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, ca_file_.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, AppendBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "pgward-gateway");
    if (post != nullptr) {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, post->form.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post->form.size()));
      curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(h, CURLOPT_USERPWD, post->credentials.c_str());
      // A redirect must not carry the credentials or the token elsewhere.
      curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    }

    const CURLcode rc = curl_easy_perform(h);
    if (body.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
      return absl::ResourceExhaustedError(absl::StrCat(method, " ", url, ": body over 1 MiB"));
    }
    if (rc != CURLE_OK) {
      return absl::UnavailableError(
          absl::StrCat(method, " ", url, ": ", error[0] != '\0' ? error : curl_easy_strerror(rc)));
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) return absl::UnavailableError(absl::StrCat(method, " ", url, ": HTTP status ", status));
    return std::move(body.data);
  }

  const std::string ca_file_;
};

}  // namespace

std::unique_ptr<HttpFetcher> MakeCurlHttpFetcher(const std::string& ca_file) {
  return std::make_unique<CurlHttpFetcher>(ca_file);
}

}  // namespace pgward::identity
