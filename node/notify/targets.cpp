// Push targets registered and removed (docs/PROTOCOL.md, "Push notifications", "Targets"):
// each checked (kind, keys, URL, the registration rate, the device's limit) before its
// endpoint's name is looked up and checked against the address policy, then stored by the
// message service, whose write checks the limits again. Also the checks of a target's
// settings: the VAPID subject, the do-not-disturb window.
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "base/format/format.hpp"
#include "node/notify/detail/service.hpp"

namespace petchat::notify {

namespace asio = boost::asio;
using errors::code;
using errors::fail;
using format::now_ms;

namespace {

std::optional<std::string> from_base64url_lenient(std::string text) {
  while (!text.empty() && text.back() == '=') text.pop_back();  // some clients pad
  return format::from_base64url(text);
}

std::string random_id() {
  unsigned char raw[16];
  RAND_bytes(raw, sizeof raw);
  return format::base64url(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
}

// Whether a new target `t` would be refused for the targets its device has (not if it pushes
// where one of them does, which it replaces). The user's limit is the write's to check: a
// device logged out a moment ago may still hold targets its end is about to remove.
std::optional<errors::failure> over_device_limit(notification_service::impl const& m, messages::push_target const& t) {
  std::size_t of_device = 0;
  for (auto const& have : m.messages.push_targets(t.user, t.device_id)) {
    bool same = t.kind == "matrix" ? have.kind == "matrix" && have.app_id == t.app_id && have.pushkey == t.pushkey
                                   : have.kind != "matrix" && have.endpoint == t.endpoint;
    if (same) return std::nullopt;
    ++of_device;
  }
  if (of_device >= m.options.max_targets_per_device)
    return fail(code::too_many_push_targets, "this device has " + std::to_string(m.options.max_targets_per_device) +
                                                 " push targets already: remove one first");
  return std::nullopt;
}

}  // namespace

namespace {

awaitable<void> forget_ended(messages::message_service& messages, users::user_service& users, std::string user) {
  for (auto const& device : detail::ended_devices(messages, users, user))
    co_await messages.remove_device_push(user, device);
}

}  // namespace

void forget_ended_devices(messages::message_service& messages, users::user_service& users, asio::io_context& io) {
  users.on_sessions_changed([&messages, &users, &io](std::string const& name) {
    asio::co_spawn(io, forget_ended(messages, users, name + "@" + users.region()), asio::detached);
  });
}

awaitable<result<messages::push_target>> notification_service::add_target(std::string user_id, std::string device_id,
                                                                          target_spec spec) {
  auto& m = *impl_;
  if (!m.options.enabled) co_return fail(code::push_disabled, "this node does not send push notifications");
  messages::push_target t;
  t.user = user_id;
  t.device_id = device_id;
  t.kind = spec.kind;
  t.created_at_ms = now_ms();
  auto const created_at_ms = t.created_at_ms;
  std::string url_field = "endpoint";
  if (spec.kind == "webpush" || spec.kind == "unifiedpush") {
    auto p256dh = from_base64url_lenient(spec.p256dh);
    if (!p256dh || !detail::valid_p256_point(*p256dh))
      co_return fail(code::invalid_field, "keys.p256dh must be a P-256 public key (65 bytes, base64url)",
                     "keys.p256dh");
    auto auth = from_base64url_lenient(spec.auth);
    if (!auth || auth->size() != detail::auth_secret_bytes)
      co_return fail(code::invalid_field, "keys.auth must be 16 bytes, base64url", "keys.auth");
    t.p256dh = *p256dh;
    t.auth = *auth;
  } else if (spec.kind == "matrix") {
    url_field = "gateway_url";
    if (spec.app_id.empty() || spec.app_id.size() > 64)
      co_return fail(code::invalid_field, "app_id must be 1 to 64 bytes", "app_id");
    if (spec.pushkey.empty() || spec.pushkey.size() > 512)
      co_return fail(code::invalid_field, "pushkey must be 1 to 512 bytes", "pushkey");
    if (spec.data_json.size() > 1024)
      co_return fail(code::invalid_field, "data must be at most 1024 bytes serialized", "data");
    t.app_id = spec.app_id;
    t.pushkey = spec.pushkey;
    t.data_json = spec.data_json.empty() ? "{}" : spec.data_json;
  } else {
    co_return fail(code::invalid_field, "kind must be webpush, unifiedpush or matrix", "kind");
  }
  std::string why;
  auto url = detail::parse_https_url(spec.endpoint, why);
  if (!url) co_return fail(code::invalid_field, url_field + ": " + why, url_field);
  if (!m.dns) co_return fail(code::push_disabled, "push notifications have not started yet");
  // Before the endpoint's name is looked up: the rate, and the device's limit as committed
  // (the write checks it again, with what else its batch adds).
  if (auto wait = m.registrations.take(user_id, now_ms())) {
    co_return errors::rate_limited("too many push target registrations; try again later", wait);
  }
  t.endpoint = spec.endpoint;
  if (auto full = over_device_limit(m, t)) co_return *full;
  // Named: no temporaries in a co_await expression (GCC 12, docs/ARCHITECTURE.md).
  auto const lookup_limit = std::chrono::milliseconds(m.options.connect_timeout_ms);
  auto const& where = *url;
  auto refused = co_await detail::check_endpoint(m.policy, *m.dns, where, lookup_limit);
  if (!refused.empty())
    co_return fail(code::push_endpoint_forbidden,
                   url_field + ": " + refused + " (push endpoints must be public unless the operator allows them)",
                   url_field);
  t.place = detail::place_of(where);
  t.id = random_id();
  t.pushed_through = m.messages.mailbox_head(user_id);  // what came before is not news
  messages::push_limits limits{
      m.options.max_targets_per_device, m.options.max_targets_per_user,
      detail::bulk_host(m.options.bulk_hosts, where.host) ? 0 : m.options.max_targets_per_host};
  auto stored = co_await m.messages.add_push_target(std::move(t), limits);
  // The session (or the account) may have ended while the endpoint was checked: its end
  // found no target then. Look again, now that the target is stored.
  if (stored) {
    // Started afresh (new, or new keys, data or endpoint: it keeps the registration's
    // creation time, where a target registered again as it was keeps its own): the retries
    // and refusals this node holds in memory for the target as it was go too, as its
    // stored failures went. Not for one registered again as it was: an app that does so at
    // every start must not reset a run of refusals that ends with the target's removal.
    if (stored->created_at_ms == created_at_ms) impl_->forget_retries(detail::target_key(*stored));
    asio::post(*m.strand, [self = impl_, user_id] {
      if (!self->stopping) self->end_sessions(user_id);
    });
  }
  co_return stored;
}

awaitable<errors::status> notification_service::remove_target(std::string user_id, std::string device_id,
                                                              std::string id) {
  auto removed = co_await impl_->messages.remove_push_target(user_id, device_id, id);
  if (!removed) co_return removed.error();
  if (!removed.value()) co_return fail(code::push_target_not_found, "this device has no push target '" + id + "'");
  impl_->forget_retries(user_id + '\0' + device_id + '\0' + id);
  co_return errors::ok();
}

std::string detail::place_of(https_url const& url) {
  auto host = url.host;  // (lower case already)
  while (host.ends_with('.')) host.pop_back();
  boost::system::error_code literal_error;
  auto address = boost::asio::ip::make_address(host, literal_error);
  if (!literal_error) {
    if (address.is_v6() && address.to_v6().is_v4_mapped())
      address = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
    host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  }
  return "https://" + host + (url.port == https_port ? "" : ":" + std::to_string(url.port));
}

bool detail::bulk_host(std::vector<std::string> const& bulk, std::string_view host) {
  auto lower = [](std::string_view v) {
    std::string out(v);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    while (out.ends_with('.')) out.pop_back();
    return out;
  };
  auto name = lower(host);
  return std::any_of(bulk.begin(), bulk.end(), [&](std::string const& entry) {
    auto e = lower(entry);
    if (!e.starts_with("*.")) return name == e;
    return name.size() > e.size() - 1 && name.ends_with(std::string_view(e).substr(1));
  });
}

bool detail::subject_refused(std::string_view subject) {
  // The host named: a mailto: address's domain, an https: URL's host.
  std::string_view host;
  if (subject.starts_with("mailto:")) {
    host = subject.substr(7);
    host = host.substr(0, host.find('?'));
    auto at = host.rfind('@');
    host = at == std::string_view::npos ? std::string_view() : host.substr(at + 1);
  }
  std::string name(host);
  std::string why;
  if (auto url = subject.starts_with("https://") ? parse_https_url(subject, why) : std::nullopt) name = url->host;
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  while (name.ends_with('.')) name.pop_back();
  auto is_or_under = [&name](std::string_view label) {
    return name == label ||
           (name.size() > label.size() && name.ends_with(label) && name[name.size() - label.size() - 1] == '.');
  };
  return is_or_under("localhost") || is_or_under("local") || is_or_under("invalid");
}

bool detail::in_dnd(messages::push_settings const& s, std::int64_t now) {
  if (!s.dnd) return false;
  auto local = ((now / 60000 + s.utc_offset_min) % 1440 + 1440) % 1440;
  if (s.dnd_start_min == s.dnd_end_min) return true;
  if (s.dnd_start_min < s.dnd_end_min) return local >= s.dnd_start_min && local < s.dnd_end_min;
  return local >= s.dnd_start_min || local < s.dnd_end_min;
}

}  // namespace petchat::notify
