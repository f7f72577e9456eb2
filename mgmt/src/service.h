// ManagementService: the EdgeManagement gRPC service — authorizes each call by role and delegates to Agent.
#pragma once

#include <edge/mgmt/agent.h>
#include <edge/mgmt/v1/agent.grpc.pb.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace edge::mgmt {

// Who the transport says is calling. `caller` is empty when the call is
// refused before any role applies: then `refusal` (UNAUTHENTICATED or
// PERMISSION_DENIED) and `reason` say why. `peer` names the connection in logs.
struct Identity {
  std::optional<Caller> caller;
  grpc::StatusCode refusal = grpc::StatusCode::UNAUTHENTICATED;
  std::string reason;
  std::string peer;
};

class ManagementService final : public v1::EdgeManagement::Service {
 public:
  // WatchEvents streams open at once, per caller identity (the actor: uid:N or cert:CN) and in
  // total; past either cap a new stream gets RESOURCE_EXHAUSTED naming the cap. A closed stream
  // frees its slot. Each stream holds a server thread, so the total bounds the threads they take.
  static constexpr int kMaxWatchStreamsPerPeer = 4;
  static constexpr int kMaxWatchStreamsTotal = 64;

  // `identify` is the transport's half of authentication (peer credentials or
  // the client certificate); `stopping` ends WatchEvents streams on shutdown.
  using Identify = std::function<Identity(grpc::ServerContext&)>;
  ManagementService(Agent& agent, Identify identify, const std::atomic<bool>& stopping);

  grpc::Status GetStatus(grpc::ServerContext* ctx, const v1::GetStatusRequest* req,
                         v1::Status* resp) override;
  grpc::Status ListKeySets(grpc::ServerContext* ctx, const v1::ListKeySetsRequest* req,
                           v1::ListKeySetsResponse* resp) override;
  grpc::Status GetKeySet(grpc::ServerContext* ctx, const v1::GetKeySetRequest* req,
                         v1::KeySet* resp) override;
  grpc::Status CreateKeySet(grpc::ServerContext* ctx, const v1::CreateKeySetRequest* req,
                            v1::KeySetChange* resp) override;
  grpc::Status RotateKeySet(grpc::ServerContext* ctx, const v1::RotateKeySetRequest* req,
                            v1::KeySetChange* resp) override;
  grpc::Status RetireKeyVersion(grpc::ServerContext* ctx, const v1::RetireKeyVersionRequest* req,
                                v1::KeySetChange* resp) override;
  grpc::Status DestroyKeySet(grpc::ServerContext* ctx, const v1::DestroyKeySetRequest* req,
                             v1::KeySetChange* resp) override;
  grpc::Status ListProperties(grpc::ServerContext* ctx, const v1::ListPropertiesRequest* req,
                              v1::ListPropertiesResponse* resp) override;
  grpc::Status GetProperty(grpc::ServerContext* ctx, const v1::GetPropertyRequest* req,
                           v1::Property* resp) override;
  grpc::Status SetProperty(grpc::ServerContext* ctx, const v1::SetPropertyRequest* req,
                           v1::Property* resp) override;
  grpc::Status UnsetProperty(grpc::ServerContext* ctx, const v1::UnsetPropertyRequest* req,
                             v1::Property* resp) override;
  grpc::Status GetConfig(grpc::ServerContext* ctx, const v1::GetConfigRequest* req,
                         v1::GetConfigResponse* resp) override;
  grpc::Status DiscardStaged(grpc::ServerContext* ctx, const v1::DiscardStagedRequest* req,
                             v1::GetConfigResponse* resp) override;
  grpc::Status Apply(grpc::ServerContext* ctx, const v1::ApplyRequest* req, v1::ApplyResponse* resp) override;
  grpc::Status Confirm(grpc::ServerContext* ctx, const v1::ConfirmRequest* req,
                       v1::ApplyResponse* resp) override;
  grpc::Status Rollback(grpc::ServerContext* ctx, const v1::RollbackRequest* req,
                        v1::ApplyResponse* resp) override;
  grpc::Status ListGenerations(grpc::ServerContext* ctx, const v1::ListGenerationsRequest* req,
                               v1::ListGenerationsResponse* resp) override;
  grpc::Status RestartFrontEnd(grpc::ServerContext* ctx, const v1::RestartFrontEndRequest* req,
                               v1::RestartFrontEndResponse* resp) override;
  grpc::Status WatchEvents(grpc::ServerContext* ctx, const v1::WatchEventsRequest* req,
                           grpc::ServerWriter<v1::Event>* writer) override;
  grpc::Status CellCreate(grpc::ServerContext* ctx, const v1::CellCreateRequest* req,
                          v1::CellStatusResponse* resp) override;
  grpc::Status CellJoin(grpc::ServerContext* ctx, const v1::CellJoinRequest* req,
                        v1::CellJoinResponse* resp) override;
  grpc::Status CellApprove(grpc::ServerContext* ctx, const v1::CellApproveRequest* req,
                           v1::CellStatusResponse* resp) override;
  grpc::Status CellRotate(grpc::ServerContext* ctx, const v1::CellRotateRequest* req,
                          v1::CellRotateResponse* resp) override;
  grpc::Status CellRemove(grpc::ServerContext* ctx, const v1::CellRemoveRequest* req,
                          v1::CellStatusResponse* resp) override;
  grpc::Status CellLeave(grpc::ServerContext* ctx, const v1::CellLeaveRequest* req,
                         v1::CellStatusResponse* resp) override;
  grpc::Status CellStatus(grpc::ServerContext* ctx, const v1::CellStatusRequest* req,
                          v1::CellStatusResponse* resp) override;

 private:
  // Identifies the caller, checks `need` and runs `fn(caller)`, mapping exceptions.
  template <class Fn>
  grpc::Status call(grpc::ServerContext& ctx, const char* rpc, v1::Role need, Fn&& fn);

  // Takes a WatchEvents slot for `actor`; empty string on success, else the refusal reason.
  std::string take_watch_slot(const std::string& actor);
  void free_watch_slot(const std::string& actor);

  Agent& agent_;
  Identify identify_;
  const std::atomic<bool>& stopping_;
  std::mutex watch_mu_;
  std::map<std::string, int> watch_per_peer_;  // guarded by watch_mu_
  int watch_total_ = 0;                        // guarded by watch_mu_
};

}  // namespace edge::mgmt
