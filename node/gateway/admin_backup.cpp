// /v1/admin/backup (docs/PROTOCOL.md, "Admin API"; docs/OPERATIONS.md, "Backup and restore").
#include "node/gateway/detail/admin_backup.hpp"

#include <algorithm>
#include <cctype>

#include "base/format/format.hpp"
#include "node/async/async.hpp"
#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway::detail {
namespace {

using errors::code;
using errors::fail;

json::object snapshot_json(backup::snapshot const& s, node_info const& info) {
  json::array files;
  for (auto const& f : s.files) files.push_back(json::object{{"path", f.path}, {"size", f.size}});
  return json::object{{"id", s.id},
                      {"dir", s.dir.string()},
                      {"made_at", format::rfc3339(s.made_at_ms)},
                      {"region", info.region},
                      {"data_format", info.data_format},
                      {"node_version", info.version},
                      {"bytes", s.bytes},
                      {"files", std::move(files)}};
}

// The snapshot, or the reason it could not be made; run on the CPU pool.
struct taken {
  std::optional<backup::snapshot> snapshot;
  errors::failure failure;
};

}  // namespace

awaitable<response> backup_answer(backup::snapshots* backups, boost::asio::thread_pool& cpu_pool, node_info const& info,
                                  request r, std::string id, std::string requester) {
  if (!backups) co_return error_response(fail(code::not_found, "this node makes no backups"));
  // A token of the requester's own (petchatctl: random), given with the POST, by which it
  // releases the snapshot it asked for before it has learnt the snapshot's id. Released by
  // a path of its own, which a node from before tokens answers 404 (a query it ignores
  // would have released whichever snapshot is open).
  bool releasing = !requester.empty();
  if (r.method == "POST") requester = query_param(r.query, "requester").value_or("");
  bool plain = requester.size() <= 64 && std::all_of(requester.begin(), requester.end(), [](char c) {
                 return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
               });
  if (!plain)
    co_return error_response(fail(code::invalid_field, "requester: up to 64 of A-Z a-z 0-9 - _", "requester"));
  if (releasing) {
    if (r.method != "DELETE") co_return method_not_allowed("DELETE");
    if (!backups->release_requested(requester))
      co_return error_response(fail(code::not_found, "no backup asked for by this requester"));
    co_return json_response(200, json::object{{"released", true}});
  }
  if (r.method == "GET") {
    auto open = backups->open();
    if (!open) co_return error_response(fail(code::not_found, "no backup is open"));
    co_return json_response(200, snapshot_json(*open, info));
  }
  if (r.method == "DELETE") {
    if (!backups->release(id))
      co_return error_response(fail(code::not_found, id.empty() ? "no backup is open" : "no open backup " + id));
    co_return json_response(200, json::object{{"released", true}});
  }
  if (r.method != "POST" || !id.empty()) co_return method_not_allowed(id.empty() ? "GET, POST, DELETE" : "GET, DELETE");
  auto work = [backups, requester] {
    taken t;
    try {
      t.snapshot = backups->take(requester);
    } catch (backup::busy_error const& e) {
      t.failure = fail(code::backup_in_progress, e.what());
    } catch (std::exception const& e) {
      t.failure = fail(code::internal, std::string("the snapshot could not be made: ") + e.what());
    }
    return t;
  };
  auto t = co_await async::offload(cpu_pool, std::move(work));
  if (!t.snapshot) co_return error_response(std::move(t.failure));
  co_return json_response(200, snapshot_json(*t.snapshot, info));
}

}  // namespace petchat::gateway::detail
