// The EdgeManagement gRPC service: role check per RPC, delegation to Agent, MgmtError -> gRPC status.
#include "service.h"

#include <edge/mgmt/error.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <string_view>
#include <utility>

namespace edge::mgmt {
namespace {

grpc::StatusCode status_code(ErrorCode c) {
  switch (c) {
    case ErrorCode::invalid_argument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::not_found:
      return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::already_exists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case ErrorCode::failed_precondition:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::aborted:
      return grpc::StatusCode::ABORTED;
    case ErrorCode::permission_denied:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ErrorCode::unauthenticated:
      return grpc::StatusCode::UNAUTHENTICATED;
    case ErrorCode::unavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case ErrorCode::internal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

// A value for a key=value log line: quoted when it would otherwise split the line into more fields.
std::string log_value(std::string_view v) {
  if (!v.empty() && v.find_first_of(" \"=\t\r\n") == std::string_view::npos) return std::string(v);
  std::string out = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += (ch == '\n' || ch == '\r' || ch == '\t') ? ' ' : ch;
  }
  return out + '"';
}

const char* role_name(v1::Role r) {
  switch (r) {
    case v1::ROLE_VIEWER:
      return "viewer";
    case v1::ROLE_OPERATOR:
      return "operator";
    default:
      return "none";
  }
}

// An error message quotes what the caller sent; gRPC carries it in the trailing metadata, which a
// client refuses beyond its limit (8 KiB by default): a multi-MiB value would turn a clear
// INVALID_ARGUMENT into RESOURCE_EXHAUSTED on the client's side. Keep it readable and bounded.
std::string bounded(std::string_view message) {
  constexpr std::size_t kMaxMessage = 1024;
  if (message.size() <= kMaxMessage) return std::string(message);
  return std::string(message.substr(0, kMaxMessage)) + "... (" + std::to_string(message.size()) + " bytes)";
}

// MgmtError keeps its code; anything else thrown by the agent is INTERNAL with its message.
grpc::Status to_status(const std::exception& e) {
  if (const auto* m = dynamic_cast<const MgmtError*>(&e)) return {status_code(m->code()), bounded(m->what())};
  return {grpc::StatusCode::INTERNAL, bounded(e.what())};
}

}  // namespace

ManagementService::ManagementService(Agent& agent, Identify identify, const std::atomic<bool>& stopping)
    : agent_(agent), identify_(std::move(identify)), stopping_(stopping) {}

template <class Fn>
grpc::Status ManagementService::call(grpc::ServerContext& ctx, const char* rpc, v1::Role need, Fn&& fn) {
  Identity id = identify_(ctx);
  grpc::StatusCode code = id.refusal;
  std::string reason = std::move(id.reason);
  std::string actor = id.caller ? id.caller->actor : "-";
  // Roles are ordered (viewer < operator): a role at least `need` may call.
  if (id.caller && id.caller->role >= need) {
    try {
      fn(*id.caller);
      return grpc::Status::OK;
    } catch (const std::exception& e) {
      return to_status(e);
    }
  }
  if (id.caller) {
    code = grpc::StatusCode::PERMISSION_DENIED;
    reason = std::string("role ") + role_name(id.caller->role) + " may not call " + rpc + " (needs " +
             role_name(need) + ")";
  }
  const char* code_name =
      code == grpc::StatusCode::PERMISSION_DENIED ? "PERMISSION_DENIED" : "UNAUTHENTICATED";
  spdlog::warn("event=mgmt_refused peer={} actor={} rpc={} code={} reason={}", log_value(id.peer),
               log_value(actor), rpc, code_name, log_value(reason));
  // The audit log keeps refusals too, so probing by an unknown or under-privileged client is on
  // record. The caller still gets its refusal if the record cannot be written (logged instead).
  try {
    agent_.audit().record(actor, rpc, "peer=" + id.peer,
                          std::string("refused: ") + code_name + ": " + reason);
  } catch (const std::exception& e) {
    spdlog::error("event=mgmt_audit_failed rpc={} reason={}", rpc, log_value(e.what()));
  }
  return {code, reason};
}

grpc::Status ManagementService::GetStatus(grpc::ServerContext* ctx, const v1::GetStatusRequest*,
                                          v1::Status* resp) {
  return call(*ctx, "GetStatus", v1::ROLE_VIEWER, [&](const Caller&) { *resp = agent_.status(); });
}

grpc::Status ManagementService::ListKeySets(grpc::ServerContext* ctx, const v1::ListKeySetsRequest*,
                                            v1::ListKeySetsResponse* resp) {
  return call(*ctx, "ListKeySets", v1::ROLE_VIEWER, [&](const Caller&) { *resp = agent_.list_key_sets(); });
}

grpc::Status ManagementService::GetKeySet(grpc::ServerContext* ctx, const v1::GetKeySetRequest* req,
                                          v1::KeySet* resp) {
  return call(*ctx, "GetKeySet", v1::ROLE_VIEWER,
              [&](const Caller&) { *resp = agent_.get_key_set(req->name()); });
}

grpc::Status ManagementService::CreateKeySet(grpc::ServerContext* ctx, const v1::CreateKeySetRequest* req,
                                             v1::KeySetChange* resp) {
  return call(*ctx, "CreateKeySet", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.create_key_set(c, *req); });
}

grpc::Status ManagementService::RotateKeySet(grpc::ServerContext* ctx, const v1::RotateKeySetRequest* req,
                                             v1::KeySetChange* resp) {
  return call(*ctx, "RotateKeySet", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.rotate_key_set(c, *req); });
}

grpc::Status ManagementService::RetireKeyVersion(grpc::ServerContext* ctx,
                                                 const v1::RetireKeyVersionRequest* req,
                                                 v1::KeySetChange* resp) {
  return call(*ctx, "RetireKeyVersion", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.retire_key_version(c, *req); });
}

grpc::Status ManagementService::DestroyKeySet(grpc::ServerContext* ctx, const v1::DestroyKeySetRequest* req,
                                              v1::KeySetChange* resp) {
  return call(*ctx, "DestroyKeySet", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.destroy_key_set(c, *req); });
}

grpc::Status ManagementService::ListProperties(grpc::ServerContext* ctx, const v1::ListPropertiesRequest*,
                                               v1::ListPropertiesResponse* resp) {
  return call(*ctx, "ListProperties", v1::ROLE_VIEWER,
              [&](const Caller&) { *resp = agent_.list_properties(); });
}

grpc::Status ManagementService::GetProperty(grpc::ServerContext* ctx, const v1::GetPropertyRequest* req,
                                            v1::Property* resp) {
  return call(*ctx, "GetProperty", v1::ROLE_VIEWER,
              [&](const Caller&) { *resp = agent_.get_property(req->name()); });
}

grpc::Status ManagementService::SetProperty(grpc::ServerContext* ctx, const v1::SetPropertyRequest* req,
                                            v1::Property* resp) {
  return call(*ctx, "SetProperty", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.set_property(c, *req); });
}

grpc::Status ManagementService::UnsetProperty(grpc::ServerContext* ctx, const v1::UnsetPropertyRequest* req,
                                              v1::Property* resp) {
  return call(*ctx, "UnsetProperty", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.unset_property(c, *req); });
}

grpc::Status ManagementService::GetConfig(grpc::ServerContext* ctx, const v1::GetConfigRequest*,
                                          v1::GetConfigResponse* resp) {
  return call(*ctx, "GetConfig", v1::ROLE_VIEWER, [&](const Caller&) { *resp = agent_.get_config(); });
}

grpc::Status ManagementService::DiscardStaged(grpc::ServerContext* ctx, const v1::DiscardStagedRequest*,
                                              v1::GetConfigResponse* resp) {
  return call(*ctx, "DiscardStaged", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.discard_staged(c); });
}

grpc::Status ManagementService::Apply(grpc::ServerContext* ctx, const v1::ApplyRequest* req,
                                      v1::ApplyResponse* resp) {
  return call(*ctx, "Apply", v1::ROLE_OPERATOR, [&](const Caller& c) { *resp = agent_.apply(c, *req); });
}

grpc::Status ManagementService::Confirm(grpc::ServerContext* ctx, const v1::ConfirmRequest*,
                                        v1::ApplyResponse* resp) {
  return call(*ctx, "Confirm", v1::ROLE_OPERATOR, [&](const Caller& c) { *resp = agent_.confirm(c); });
}

grpc::Status ManagementService::Rollback(grpc::ServerContext* ctx, const v1::RollbackRequest* req,
                                         v1::ApplyResponse* resp) {
  return call(*ctx, "Rollback", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.rollback(c, *req); });
}

grpc::Status ManagementService::ListGenerations(grpc::ServerContext* ctx, const v1::ListGenerationsRequest*,
                                                v1::ListGenerationsResponse* resp) {
  return call(*ctx, "ListGenerations", v1::ROLE_VIEWER,
              [&](const Caller&) { *resp = agent_.list_generations(); });
}

grpc::Status ManagementService::RestartFrontEnd(grpc::ServerContext* ctx, const v1::RestartFrontEndRequest*,
                                                v1::RestartFrontEndResponse* resp) {
  return call(*ctx, "RestartFrontEnd", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.restart_front_end(c); });
}

// The cell: every call needs the operator role (issue 15), the status too.
grpc::Status ManagementService::CellCreate(grpc::ServerContext* ctx, const v1::CellCreateRequest* req,
                                           v1::CellStatusResponse* resp) {
  return call(*ctx, "CellCreate", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.cell_create(c, *req); });
}

grpc::Status ManagementService::CellJoin(grpc::ServerContext* ctx, const v1::CellJoinRequest* req,
                                         v1::CellJoinResponse* resp) {
  return call(*ctx, "CellJoin", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.cell_join(c, *req); });
}

grpc::Status ManagementService::CellApprove(grpc::ServerContext* ctx, const v1::CellApproveRequest* req,
                                            v1::CellStatusResponse* resp) {
  return call(*ctx, "CellApprove", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.cell_approve(c, *req); });
}

grpc::Status ManagementService::CellRotate(grpc::ServerContext* ctx, const v1::CellRotateRequest*,
                                           v1::CellRotateResponse* resp) {
  return call(*ctx, "CellRotate", v1::ROLE_OPERATOR, [&](const Caller& c) { *resp = agent_.cell_rotate(c); });
}

grpc::Status ManagementService::CellRemove(grpc::ServerContext* ctx, const v1::CellRemoveRequest* req,
                                           v1::CellStatusResponse* resp) {
  return call(*ctx, "CellRemove", v1::ROLE_OPERATOR,
              [&](const Caller& c) { *resp = agent_.cell_remove(c, *req); });
}

grpc::Status ManagementService::CellLeave(grpc::ServerContext* ctx, const v1::CellLeaveRequest*,
                                          v1::CellStatusResponse* resp) {
  return call(*ctx, "CellLeave", v1::ROLE_OPERATOR, [&](const Caller& c) { *resp = agent_.cell_leave(c); });
}

grpc::Status ManagementService::CellStatus(grpc::ServerContext* ctx, const v1::CellStatusRequest*,
                                           v1::CellStatusResponse* resp) {
  return call(*ctx, "CellStatus", v1::ROLE_OPERATOR, [&](const Caller&) { *resp = agent_.cell_status(); });
}

std::string ManagementService::take_watch_slot(const std::string& actor) {
  std::lock_guard lock(watch_mu_);
  int& mine = watch_per_peer_[actor];
  if (mine >= kMaxWatchStreamsPerPeer) {
    return "too many WatchEvents streams for " + actor + " (at most " +
           std::to_string(kMaxWatchStreamsPerPeer) + " per peer)";
  }
  if (watch_total_ >= kMaxWatchStreamsTotal) {
    if (mine == 0) watch_per_peer_.erase(actor);
    return "too many WatchEvents streams (at most " + std::to_string(kMaxWatchStreamsTotal) + " in total)";
  }
  ++mine;
  ++watch_total_;
  return {};
}

void ManagementService::free_watch_slot(const std::string& actor) {
  std::lock_guard lock(watch_mu_);
  auto it = watch_per_peer_.find(actor);
  if (it == watch_per_peer_.end()) return;
  if (--it->second <= 0) watch_per_peer_.erase(it);
  --watch_total_;
}

grpc::Status ManagementService::WatchEvents(grpc::ServerContext* ctx, const v1::WatchEventsRequest*,
                                            grpc::ServerWriter<v1::Event>* writer) {
  grpc::Status capped;
  grpc::Status st = call(*ctx, "WatchEvents", v1::ROLE_VIEWER, [&](const Caller& c) {
    const std::string full = take_watch_slot(c.actor);
    if (!full.empty()) {
      spdlog::warn("event=mgmt_watch_capped actor={} reason={}", log_value(c.actor), log_value(full));
      capped = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, full);
      return;
    }
    struct Slot {
      ManagementService& self;
      const std::string& actor;
      ~Slot() { self.free_watch_slot(actor); }
    } slot{*this, c.actor};
    auto sub = agent_.events().subscribe();
    // Headers go out at once, so a client knows it is subscribed before the first event arrives.
    writer->SendInitialMetadata();
    // The short wait bounds how long a cancelled client or a shutdown keeps this handler thread.
    constexpr std::chrono::milliseconds kWait(250);
    while (!ctx->IsCancelled() && !stopping_.load()) {
      auto asked = std::chrono::steady_clock::now();
      std::optional<v1::Event> ev = sub->next(kWait);
      if (ev) {
        if (!writer->Write(*ev)) break;  // the client went away
      } else if (std::chrono::steady_clock::now() - asked < kWait / 2) {
        break;  // nullopt well before the timeout: the agent closed its bus (it is shutting down)
      }
    }
  });
  return capped.ok() ? st : capped;
}

}  // namespace edge::mgmt
