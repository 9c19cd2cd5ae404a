#include "node/messages/detail/keys.hpp"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>

#include "base/format/format.hpp"
#include "node/messages/messages.hpp"

namespace petchat::messages::detail {
namespace {

// The newest millisecond an id was made at: never behind an id made before (the wall clock
// may step back), so ids made one after another are in order, which the commit order of
// messages relies on. The counter starts at a random value in each millisecond: one running
// across milliseconds would tell anyone comparing two of their own ids how many messages the
// node stamped between them.
struct id_clock {
  std::mutex mu;
  std::uint64_t ms = 0;
  std::uint64_t counter = 0;

  void start_at(std::uint64_t at) {  // (mu held)
    ms = at;
    randombytes_buf(&counter, sizeof counter);
    counter >>= 1;  // room for 2^63 ids in the millisecond
  }
};

id_clock& ids_clock() {
  static id_clock c;
  return c;
}

}  // namespace

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  randombytes_buf(&v, sizeof v);
  return v;
}

std::uint16_t region_hash(std::string_view region) {
  unsigned char out[crypto_generichash_BYTES_MIN];
  crypto_generichash(out, sizeof out, reinterpret_cast<unsigned char const*>(region.data()), region.size(), nullptr, 0);
  return static_cast<std::uint16_t>((out[0] << 8) | out[1]);
}

std::uint16_t message_id_region_hash(std::string_view id) {
  if (id.size() < 8) return 0;
  return static_cast<std::uint16_t>((static_cast<unsigned char>(id[6]) << 8) | static_cast<unsigned char>(id[7]));
}

void keep_ids_after(std::int64_t ms) {
  auto next = static_cast<std::uint64_t>(ms) + 1;  // the next millisecond: no stored id is repeated
  auto& c = ids_clock();
  std::lock_guard lock(c.mu);
  if (c.ms < next) c.start_at(next);
}

std::string new_message_id(std::uint16_t region_hash) {
  using namespace std::chrono;
  auto now = static_cast<std::uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
  std::uint64_t ms = 0, n = 0;
  {
    auto& c = ids_clock();
    std::lock_guard lock(c.mu);
    if (c.ms < now)
      c.start_at(now);
    else
      ++c.counter;
    ms = c.ms;
    n = c.counter;
  }
  std::string id = be64(ms).substr(2);  // 6 bytes of milliseconds
  id += static_cast<char>(region_hash >> 8);
  id += static_cast<char>(region_hash & 0xff);
  id += be64(n);
  return id;
}

std::int64_t message_id_time_ms(std::string_view id) {
  if (id.size() < 6) return 0;
  return static_cast<std::int64_t>(from_be64(std::string(2, '\0') + std::string(id.substr(0, 6))));
}

std::string message_id_floor(std::int64_t ms) {
  if (ms < 0) ms = 0;
  return be64(static_cast<std::uint64_t>(ms)).substr(2) + std::string(10, '\0');
}

namespace {

std::string home_tag(std::string_view region) {
  unsigned char out[crypto_generichash_BYTES_MIN];
  crypto_generichash(out, sizeof out, reinterpret_cast<unsigned char const*>(region.data()), region.size(), nullptr, 0);
  return std::string(reinterpret_cast<char const*>(out), 4);
}

}  // namespace

std::string new_group_id(std::string_view home) {
  unsigned char raw[16];
  randombytes_buf(raw, sizeof raw);
  return "g" + format::base64url(home_tag(home) + std::string(reinterpret_cast<char const*>(raw), sizeof raw));
}

bool group_id_allows_home(std::string_view conv, std::string_view region) {
  if (conv.size() != 28) return true;  // the older form (or not a group id: judged elsewhere)
  // One that does not decode names no home, and is no older form either: no home makes it.
  auto raw = format::from_base64url(conv.substr(1));
  return raw && raw->size() == 20 && raw->substr(0, 4) == home_tag(region);
}

std::string id_home_tag(std::string_view conv) {
  if (conv.size() != 28 || conv.empty() || conv[0] != 'g') return {};
  auto raw = format::from_base64url(conv.substr(1));
  return raw && raw->size() == 20 ? raw->substr(0, 4) : "?";
}

bool well_formed_group_id(std::string_view conv) {
  return !conv.empty() && conv[0] == 'g' && well_formed_conversation_id(conv);
}

bool well_formed_conversation_id(std::string_view conv) {
  auto base64url = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  };
  return conv.size() >= 2 && conv.size() <= 64 && (conv[0] == 'g' || conv[0] == 'd') &&
         std::all_of(conv.begin() + 1, conv.end(), base64url);
}

std::string new_request_id() {
  unsigned char raw[12];
  randombytes_buf(raw, sizeof raw);
  return "r" + format::base64url(std::string_view(reinterpret_cast<char const*>(raw), sizeof raw));
}

std::string direct_conversation_id(std::string const& a, std::string const& b) {
  auto const& lo = a < b ? a : b;
  auto const& hi = a < b ? b : a;
  std::string joined = lo + '\n' + hi;
  unsigned char digest[16];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<unsigned char const*>(joined.data()), joined.size(),
                     nullptr, 0);
  return "d" + format::base64url(std::string_view(reinterpret_cast<char const*>(digest), sizeof digest));
}

}  // namespace petchat::messages::detail

namespace petchat::messages {

std::vector<std::pair<std::string, std::string>> region_hash_clashes(std::vector<std::string> const& regions) {
  std::map<std::uint16_t, std::string> seen;
  std::vector<std::pair<std::string, std::string>> out;
  for (auto const& r : regions)
    if (auto [it, fresh] = seen.try_emplace(detail::region_hash(r), r); !fresh && it->second != r)
      out.emplace_back(it->second, r);
  return out;
}

}  // namespace petchat::messages
