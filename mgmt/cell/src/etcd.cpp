// EtcdClient and EtcdWatch over etcd's v3 gRPC API (the subset in mgmt/proto/etcd).
#include <edge/cell/etcd.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <sstream>

#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace edge::cell {
namespace pb = etcdserverpb;

namespace {

std::string read_pem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw EtcdError("cannot read " + path, grpc::StatusCode::INVALID_ARGUMENT);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

KeyValue from_pb(const mvccpb::KeyValue& kv) {
  KeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.lease = kv.lease();
  return out;
}

bool retry_elsewhere(const grpc::Status& st, bool read) {
  return st.error_code() == grpc::StatusCode::UNAVAILABLE ||
         (read && st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}

}  // namespace

bool EtcdError::unavailable() const noexcept {
  return code_ == grpc::StatusCode::UNAVAILABLE || code_ == grpc::StatusCode::DEADLINE_EXCEEDED;
}

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

struct EtcdClient::Impl {
  EtcdOptions options;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  mutable std::mutex mu;
  std::size_t current = 0;  // index into options.endpoints
  std::vector<std::shared_ptr<grpc::Channel>> channels;

  explicit Impl(EtcdOptions o) : options(std::move(o)) {
    if (options.endpoints.empty())
      throw EtcdError("no etcd endpoint configured", grpc::StatusCode::INVALID_ARGUMENT);
    if (options.tls) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = read_pem(options.tls->ca_file);
      if (!options.tls->cert_file.empty()) {
        ssl.pem_cert_chain = read_pem(options.tls->cert_file);
        ssl.pem_private_key = read_pem(options.tls->key_file);
      }
      creds = grpc::SslCredentials(ssl);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    channels.resize(options.endpoints.size());
  }

  // A channel that failed to connect can stay in its failure state well past the
  // endpoint's return (seen with gRPC 1.51 against an etcd that started a moment
  // later): it is dropped, and the next call to that endpoint makes a new one.
  void drop_channel(std::size_t i) {
    std::lock_guard lock(mu);
    channels[i].reset();
  }

  std::shared_ptr<grpc::Channel> channel(std::size_t i) {
    std::lock_guard lock(mu);
    if (!channels[i]) {
      grpc::ChannelArguments args;
      // Give up on a dead endpoint quickly and try the next one; reconnect soon when it returns.
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
      // Our own subchannels: a channel made again after a failure starts fresh.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      channels[i] = grpc::CreateCustomChannel(options.endpoints[i], creds, args);
    }
    return channels[i];
  }

  void set_deadline(grpc::ClientContext& ctx) const {
    ctx.set_deadline(std::chrono::system_clock::now() + options.call_timeout);
  }

  // Runs call(channel, ctx) on the endpoint in use, then on the next ones while they
  // answer as retry_elsewhere says; the endpoint that answered becomes the one in use.
  template <class Call>
  void run(const char* what, bool read, Call&& call) {
    std::size_t start;
    {
      std::lock_guard lock(mu);
      start = current;
    }
    grpc::Status last;
    std::string tried;
    for (std::size_t n = 0; n < options.endpoints.size(); ++n) {
      const std::size_t i = (start + n) % options.endpoints.size();
      grpc::ClientContext ctx;
      set_deadline(ctx);
      last = call(channel(i), ctx);
      if (last.ok()) {
        std::lock_guard lock(mu);
        current = i;
        return;
      }
      tried += (tried.empty() ? "" : ", ") + options.endpoints[i];
      if (last.error_code() == grpc::StatusCode::UNAVAILABLE) drop_channel(i);
      if (!retry_elsewhere(last, read)) break;
    }
    throw EtcdError(std::string("etcd ") + what + " failed (" + tried + "): " + last.error_message() + " [" +
                        std::to_string(last.error_code()) + "]",
                    last.error_code());
  }
};

EtcdClient::EtcdClient(EtcdOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
EtcdClient::~EtcdClient() = default;

std::string EtcdClient::endpoint() const {
  std::lock_guard lock(impl_->mu);
  return impl_->options.endpoints[impl_->current];
}

std::optional<KeyValue> EtcdClient::get(std::string_view key) {
  pb::RangeRequest req;
  req.set_key(std::string(key));
  pb::RangeResponse resp;
  impl_->run("get", true, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Range(&ctx, req, &resp);
  });
  if (resp.kvs_size() == 0) return std::nullopt;
  return from_pb(resp.kvs(0));
}

EtcdClient::Range EtcdClient::get_prefix(std::string_view prefix) {
  pb::RangeRequest req;
  req.set_key(std::string(prefix));
  req.set_range_end(prefix_end(prefix));
  pb::RangeResponse resp;
  impl_->run("get prefix", true, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Range(&ctx, req, &resp);
  });
  Range out;
  out.revision = resp.header().revision();
  for (const auto& kv : resp.kvs()) out.kvs.push_back(from_pb(kv));
  return out;
}

std::int64_t EtcdClient::put(std::string_view key, std::string_view value, std::int64_t lease) {
  pb::PutRequest req;
  req.set_key(std::string(key));
  req.set_value(std::string(value));
  req.set_lease(lease);
  pb::PutResponse resp;
  impl_->run("put", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Put(&ctx, req, &resp);
  });
  return resp.header().revision();
}

namespace {
bool txn_put_if(EtcdClient::Impl& im, std::string_view key, pb::Compare cmp, std::string_view value,
                std::int64_t lease) {
  pb::TxnRequest req;
  *req.add_compare() = std::move(cmp);
  pb::PutRequest* put = req.add_success()->mutable_request_put();
  put->set_key(std::string(key));
  put->set_value(std::string(value));
  put->set_lease(lease);
  pb::TxnResponse resp;
  im.run("txn", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->Txn(&ctx, req, &resp);
  });
  return resp.succeeded();
}
}  // namespace

bool EtcdClient::create(std::string_view key, std::string_view value, std::int64_t lease) {
  pb::Compare cmp;
  cmp.set_key(std::string(key));
  cmp.set_target(pb::Compare::CREATE);
  cmp.set_result(pb::Compare::EQUAL);
  cmp.set_create_revision(0);
  return txn_put_if(*impl_, key, std::move(cmp), value, lease);
}

bool EtcdClient::compare_and_swap(std::string_view key, std::int64_t mod_revision, std::string_view value,
                                  std::int64_t lease) {
  pb::Compare cmp;
  cmp.set_key(std::string(key));
  cmp.set_target(pb::Compare::MOD);
  cmp.set_result(pb::Compare::EQUAL);
  cmp.set_mod_revision(mod_revision);
  return txn_put_if(*impl_, key, std::move(cmp), value, lease);
}

std::int64_t EtcdClient::remove(std::string_view key) {
  pb::DeleteRangeRequest req;
  req.set_key(std::string(key));
  pb::DeleteRangeResponse resp;
  impl_->run("delete", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::KV::NewStub(ch)->DeleteRange(&ctx, req, &resp);
  });
  return resp.deleted();
}

std::int64_t EtcdClient::grant_lease(std::chrono::seconds ttl) {
  if (ttl.count() < 1) throw EtcdError("a lease lasts at least 1 s", grpc::StatusCode::INVALID_ARGUMENT);
  pb::LeaseGrantRequest req;
  req.set_ttl(ttl.count());
  pb::LeaseGrantResponse resp;
  impl_->run("lease grant", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::Lease::NewStub(ch)->LeaseGrant(&ctx, req, &resp);
  });
  if (!resp.error().empty()) throw EtcdError("etcd lease grant: " + resp.error(), grpc::StatusCode::UNKNOWN);
  return resp.id();
}

std::int64_t EtcdClient::keep_alive(std::int64_t lease) {
  pb::LeaseKeepAliveResponse resp;
  // A keep-alive is idempotent: retried on another endpoint like a read.
  impl_->run("lease keep-alive", true,
             [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
               auto stream = pb::Lease::NewStub(ch)->LeaseKeepAlive(&ctx);
               pb::LeaseKeepAliveRequest req;
               req.set_id(lease);
               if (stream->Write(req)) {
                 stream->WritesDone();
                 if (!stream->Read(&resp)) resp.Clear();
               }
               return stream->Finish();
             });
  return resp.ttl();
}

void EtcdClient::revoke_lease(std::int64_t lease) {
  pb::LeaseRevokeRequest req;
  req.set_id(lease);
  pb::LeaseRevokeResponse resp;
  impl_->run("lease revoke", false, [&](const std::shared_ptr<grpc::Channel>& ch, grpc::ClientContext& ctx) {
    return pb::Lease::NewStub(ch)->LeaseRevoke(&ctx, req, &resp);
  });
}

// ---- watch ----

struct EtcdWatch::State {
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  grpc::ClientContext* ctx = nullptr;  // the open stream's, to cancel it
  std::int64_t next_revision = 0;
  std::atomic<int> streams{0};
};

EtcdWatch::EtcdWatch(EtcdClient& client, std::string prefix, std::int64_t start_revision, OnEvents on_events,
                     OnCompacted on_compacted)
    : client_(client),
      prefix_(std::move(prefix)),
      on_events_(std::move(on_events)),
      on_compacted_(std::move(on_compacted)),
      state_(std::make_shared<State>()) {
  state_->next_revision = start_revision;
  thread_ = std::thread([this] { run(); });
}

EtcdWatch::~EtcdWatch() {
  {
    std::lock_guard lock(state_->mu);
    state_->stopping = true;
    if (state_->ctx != nullptr) state_->ctx->TryCancel();
  }
  state_->cv.notify_all();
  thread_.join();
}

int EtcdWatch::streams() const { return state_->streams.load(); }

void EtcdWatch::run() {
  EtcdClient::Impl& im = client_.impl();
  std::size_t endpoint = 0;
  {
    std::lock_guard lock(im.mu);
    endpoint = im.current;
  }
  for (;;) {
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(state_->mu);
      if (state_->stopping) return;
      state_->ctx = &ctx;
    }
    state_->streams.fetch_add(1);
    auto stream = pb::Watch::NewStub(im.channel(endpoint))->Watch(&ctx);
    pb::WatchRequest req;
    pb::WatchCreateRequest* c = req.mutable_create_request();
    c->set_key(prefix_);
    c->set_range_end(prefix_end(prefix_));
    c->set_start_revision(state_->next_revision);
    bool broke = !stream->Write(req);
    pb::WatchResponse resp;
    while (!broke && stream->Read(&resp)) {
      if (resp.compact_revision() != 0) {
        // What we asked for is gone; the caller re-reads, we go on from what is there.
        state_->next_revision = resp.compact_revision();
        if (on_compacted_) on_compacted_(resp.compact_revision());
        break;
      }
      if (resp.canceled()) break;
      // "From now" becomes a revision once the server has created the watch, so a
      // reconnect resumes where this stream started, not at a later "now".
      if (resp.created() && state_->next_revision == 0) state_->next_revision = resp.header().revision() + 1;
      if (resp.events_size() == 0) continue;
      std::vector<WatchEvent> events;
      events.reserve(static_cast<std::size_t>(resp.events_size()));
      for (const auto& e : resp.events()) {
        WatchEvent w;
        w.type = e.type() == mvccpb::Event::DELETE ? WatchEvent::Type::remove : WatchEvent::Type::put;
        w.kv = from_pb(e.kv());
        state_->next_revision = std::max(state_->next_revision, e.kv().mod_revision() + 1);
        events.push_back(std::move(w));
      }
      on_events_(events);
    }
    ctx.TryCancel();
    stream->Finish();
    std::unique_lock lock(state_->mu);
    state_->ctx = nullptr;
    if (state_->stopping) return;
    // The stream broke: the next endpoint (this one's channel made again), after a short
    // pause (bounded, interruptible).
    im.drop_channel(endpoint);
    endpoint = (endpoint + 1) % im.options.endpoints.size();
    state_->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return state_->stopping; });
    if (state_->stopping) return;
  }
}

}  // namespace edge::cell
