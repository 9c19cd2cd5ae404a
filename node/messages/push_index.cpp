// The push targets' indexes (detail/push_index.hpp), and their building for a store made
// before each was kept (detail/opening.hpp).
#include "node/messages/detail/push_index.hpp"

#include <sodium.h>

#include <algorithm>
#include <future>

#include "node/messages/detail/conversations.hpp"
#include "node/messages/detail/opening.hpp"
#include "node/messages/detail/push.hpp"

namespace petchat::messages {

std::string detail::identity_of(std::string_view kind, std::string_view endpoint, std::string_view app_id,
                                std::string_view pushkey) {
  std::string text = kind == "matrix"
                         ? "matrix" + std::string(1, '\0') + std::string(app_id) + '\0' + std::string(pushkey)
                         : "endpoint" + std::string(1, '\0') + std::string(endpoint);
  std::string out(keys::push_identity_bytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(),
                     reinterpret_cast<unsigned char const*>(text.data()), text.size(), nullptr, 0);
  return out;
}
std::string detail::identity_of(records::push_target_record const& r) {
  return identity_of(r.kind(), r.endpoint(), r.app_id(), r.pushkey());
}

std::string detail::place_of(std::string_view endpoint) {
  constexpr std::string_view scheme = "https://";
  auto rest = endpoint.substr(std::min(endpoint.size(), scheme.size()));
  std::string host(rest.substr(0, rest.find_first_of("/?#")));
  std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
  if (host.ends_with(":443")) host.resize(host.size() - 4);
  return std::string(scheme) + host;
}

std::string detail::place_of(records::push_target_record const& r) {
  return r.place().empty() ? place_of(r.endpoint()) : r.place();
}

void detail::put_target(store::rocks_batch& b, std::string const& key, records::push_target_record const& r) {
  b.put(cf::push, key, r.SerializeAsString());
  b.put(cf::push, keys::push_identity_key(identity_of(r), key), "");
  auto place = place_of(r);
  auto entry = keys::push_place_key(place, key);
  if (b.get(cf::push, entry)) return;
  b.put(cf::push, entry, "");
  service_detail::add_count(b, cf::push, keys::push_place_count_key(place), 1);
}

void detail::erase_target(store::rocks_batch& b, std::string const& key, records::push_target_record const& r) {
  b.erase(cf::push, key);
  b.erase(cf::push, keys::push_identity_key(identity_of(r), key));
  auto place = place_of(r);
  auto entry = keys::push_place_key(place, key);
  if (!b.get(cf::push, entry)) return;
  b.erase(cf::push, entry);
  service_detail::add_count(b, cf::push, keys::push_place_count_key(place), -1);
}

std::vector<std::string> detail::take_identity(message_service::impl const& m, store::rocks_batch& b,
                                               std::string const& identity, std::string const& keep) {
  std::vector<std::string> index;
  auto first = keys::push_identity_first(identity);
  m.db.scan(cf::push, first, keys::prefix_end(first), [&](std::string_view key, std::string_view) {
    index.emplace_back(key);
    return index.size() < 4096;
  });
  std::vector<std::string> taken;  // their keys
  for (auto const& entry : index) {
    auto target = "t/" + entry.substr(first.size());
    if (target == keep) continue;
    records::push_target_record r;
    auto v = b.get(cf::push, target);
    if (v && r.ParseFromString(*v) && identity_of(r) == identity) {
      erase_target(b, target, r);
      taken.push_back(target);
    } else {
      b.erase(cf::push, entry);  // gone already (removed within this batch)
    }
  }
  return taken;
}

std::uint64_t detail::targets_at(store::rocks_batch& b, std::string const& place) {
  return service_detail::read_count(b, cf::push, keys::push_place_count_key(place));
}

void detail::index_push_targets(message_service::impl& m) {
  if (m.db.get(cf::state, keys::push_places_indexed_key())) return;
  constexpr std::size_t per_write = 2048;
  std::string from = "t/";
  std::size_t indexed = 0;
  for (;;) {
    auto found = std::make_shared<std::vector<std::pair<std::string, records::push_target_record>>>();
    m.db.scan(cf::push, from, keys::prefix_end("t/"), [&](std::string_view key, std::string_view value) {
      records::push_target_record r;
      if (r.ParseFromArray(value.data(), static_cast<int>(value.size())))
        found->emplace_back(std::string(key), std::move(r));
      from = std::string(key) + '\0';
      return found->size() < per_write;
    });
    bool last = found->size() < per_write;
    store::rocks_db::write_fn fn = [found, last](store::rocks_batch& b) {
      for (auto const& [key, r] : *found) put_target(b, key, r);  // (the same keys again, counted once)
      if (last) b.put(cf::state, keys::push_identities_indexed_key(), "");
      if (last) b.put(cf::state, keys::push_places_indexed_key(), "");
      return true;
    };
    auto done = std::make_shared<std::promise<store::write_outcome>>();
    auto outcome = done->get_future();
    m.db.submit(std::move(fn), [done](store::write_outcome o) { done->set_value(o); });
    if (outcome.get() != store::write_outcome::committed)
      throw store::rocks_error("the indexes of push targets could not be written");
    indexed += found->size();
    if (last) break;
  }
  if (indexed > 0)
    log::get("push")->info("indexed {} push targets by what they push to and where (store format 8)", indexed);
}

}  // namespace petchat::messages
