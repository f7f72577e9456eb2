// edge-image: build (signed in the HSM), verify and install firmware bundles into A/B slots.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/hsm/lab.h>
#include <edge/hsm/signing_key.h>
#include <edge/images/bundle.h>
#include <edge/images/slots.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#ifndef EDGE_IMAGE_COMPATIBLE
#error "EDGE_IMAGE_COMPATIBLE must be defined by the build"
#endif
#ifndef EDGE_IMAGE_DEFAULT_CONFIG
#error "EDGE_IMAGE_DEFAULT_CONFIG must be defined by the build"
#endif
#ifndef EDGE_IMAGE_DEFAULT_UNIT
#error "EDGE_IMAGE_DEFAULT_UNIT must be defined by the build"
#endif
#ifndef EDGE_IMAGE_KEYRING
#error "EDGE_IMAGE_KEYRING must be defined by the build"
#endif

namespace {

namespace fs = std::filesystem;
using edge::images::ImageError;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr const char* kUsage = R"(usage: edge-image COMMAND [ARGS] [OPTIONS]

Commands:
  build --version V --out FILE.bundle [--key NAME] [--rollback N]
        pack edged, edgectl, edge-hsm, the default configuration and the systemd
        unit (or the --file list), sign the manifest with key NAME (default
        firmware) in the HSM, check the result against the key's public half;
        N (default 0) is the bundle's rollback index
  verify FILE.bundle [--keyring DIR | --trust PUBKEY.pem]
        signature (with the installed keyring, default )" EDGE_IMAGE_KEYRING R"(),
        compatibility, every file's SHA-256; exit 1 with the reason
  install FILE.bundle --root DIR [--keyring DIR | --trust PUBKEY.pem] [--force] [--allow-downgrade] [--tries N]
        verify, then write the inactive slot and mark it to try (N boots, default 3);
        refuses a version downgrade unless --force, and a bundle below the root's
        stored rollback index unless --allow-downgrade (written to DIR/audit.log)
  boot --root DIR          select the slot a boot would use (counts a try) and print it
  mark-good --root DIR     commit the booted slot
  status --root DIR        the slots and their state

Options:
  --keyring DIR       (verify, install) trust the *.pem keys of DIR instead of )" EDGE_IMAGE_KEYRING R"(
  --trust PUBKEY.pem  (verify, install) development: trust this one key instead of the keyring
                      (said on stdout and, for install, in the audit log)
  --file PATH=SOURCE  (build) pack SOURCE as PATH instead of the default list; repeatable
  --bin-dir DIR       (build) where edged, edgectl, edge-hsm are (default: this program's directory)
  --config FILE       (build) default configuration (default: )" EDGE_IMAGE_DEFAULT_CONFIG R"()
  --unit FILE         (build) systemd unit (default: )" EDGE_IMAGE_DEFAULT_UNIT R"()
  --compatible STR    product string (default: )" EDGE_IMAGE_COMPATIBLE R"()
  --state-dir DIR     lab HSM state directory (default: $EDGE_STATE_DIR, else ./var)
  --module PATH       PKCS#11 module of a non-lab HSM (then --token/--token-uri and --pin-file/--pin-env)
  --token LABEL, --token-uri URI, --pin-file PATH, --pin-env VAR
  -h, --help          this text

Exit status: 0 success, 1 refused or failed, 2 usage error.
)";

struct UsageError {
  std::string message;
};

struct Options {
  std::optional<std::string> version, out, key, rollback, trust, keyring, root, tries, bin_dir, config, unit,
      compatible, state_dir, module, token, token_uri, pin_file, pin_env;
  std::vector<std::string> files;
  bool force = false, allow_downgrade = false, help = false;
  std::vector<std::string> args;
};

// Every option that takes a value, and where parse() stores it.
constexpr std::pair<const char*, std::optional<std::string> Options::*> kValueOptions[] = {
    {"--version", &Options::version},
    {"--out", &Options::out},
    {"--key", &Options::key},
    {"--rollback", &Options::rollback},
    {"--trust", &Options::trust},
    {"--keyring", &Options::keyring},
    {"--root", &Options::root},
    {"--tries", &Options::tries},
    {"--bin-dir", &Options::bin_dir},
    {"--config", &Options::config},
    {"--unit", &Options::unit},
    {"--compatible", &Options::compatible},
    {"--state-dir", &Options::state_dir},
    {"--module", &Options::module},
    {"--token", &Options::token},
    {"--token-uri", &Options::token_uri},
    {"--pin-file", &Options::pin_file},
    {"--pin-env", &Options::pin_env},
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.empty() || a[0] != '-' || a == "-") {
      o.args.push_back(a);
      continue;
    }
    if (a == "-h" || a == "--help") {
      o.help = true;
      continue;
    }
    if (a == "--force") {
      o.force = true;
      continue;
    }
    if (a == "--allow-downgrade") {
      o.allow_downgrade = true;
      continue;
    }
    std::string name = a, value;
    bool has_value = false;
    if (const auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    auto take_value = [&] {
      if (!has_value) {
        if (i + 1 >= argc) throw UsageError{name + " needs a value"};
        value = argv[++i];
      }
      if (value.empty()) throw UsageError{name + " needs a non-empty value"};
    };
    if (name == "--file") {
      take_value();
      o.files.push_back(value);
      continue;
    }
    bool known = false;
    for (const auto& [option, field] : kValueOptions) {
      if (name != option) continue;
      known = true;
      take_value();
      if (o.*field) throw UsageError{name + " given twice"};
      o.*field = value;
    }
    if (!known) throw UsageError{"unknown option " + name};
  }
  return o;
}

// Refuses options that the command would silently ignore.
void only(const Options& o, std::initializer_list<std::optional<std::string> Options::*> allowed,
          const char* command) {
  for (const auto& [name, field] : kValueOptions) {
    if (!(o.*field)) continue;
    bool ok = false;
    for (auto f : allowed) ok = ok || f == field;
    if (!ok) throw UsageError{std::string(name) + " does not apply to " + command};
  }
}

std::string required(const std::optional<std::string>& v, const char* what, const char* command) {
  if (!v) throw UsageError{std::string(command) + " needs " + what};
  return *v;
}

std::string compatible_of(const Options& o) { return o.compatible ? *o.compatible : EDGE_IMAGE_COMPATIBLE; }

edge::hsm::HsmConfig hsm_config_of(const Options& o) {
  edge::hsm::HsmConfig c;
  try {
    c = edge::hsm::tool_hsm_config({o.state_dir, o.module, o.token, o.token_uri, o.pin_file, o.pin_env});
  } catch (const std::invalid_argument& e) {
    throw UsageError{e.what()};
  }
  c.max_sessions = 1;
  return c;
}

fs::path own_directory() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw ImageError("cannot find this program's directory (give --bin-dir): " + ec.message());
  return self.parent_path();
}

std::vector<edge::images::BuildInput> inputs_of(const Options& o) {
  std::vector<edge::images::BuildInput> in;
  if (!o.files.empty()) {
    if (o.bin_dir || o.config || o.unit)
      throw UsageError{"--file replaces the default list: no --bin-dir/--config/--unit"};
    for (const std::string& f : o.files) {
      const auto eq = f.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == f.size())
        throw UsageError{"--file needs PATH=SOURCE, not '" + f + "'"};
      in.push_back({f.substr(0, eq), f.substr(eq + 1)});
    }
    return in;
  }
  const fs::path bin = o.bin_dir ? fs::path(*o.bin_dir) : own_directory();
  for (const char* program : {"edged", "edgectl", "edge-hsm"})
    in.push_back({std::string("bin/") + program, bin / program});
  in.push_back({"etc/edged.conf", o.config ? fs::path(*o.config) : fs::path(EDGE_IMAGE_DEFAULT_CONFIG)});
  in.push_back({"systemd/edged.service", o.unit ? fs::path(*o.unit) : fs::path(EDGE_IMAGE_DEFAULT_UNIT)});
  for (const auto& i : in) {
    if (!fs::is_regular_file(i.source))
      throw ImageError("cannot pack " + i.path + ": " + i.source.string() + " is missing");
  }
  return in;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int cmd_build(const Options& o) {
  only(o,
       {&Options::version, &Options::out, &Options::key, &Options::rollback, &Options::bin_dir,
        &Options::config, &Options::unit, &Options::compatible, &Options::state_dir, &Options::module,
        &Options::token, &Options::token_uri, &Options::pin_file, &Options::pin_env},
       "build");
  if (o.args.size() != 1 || o.force)
    throw UsageError{"usage: edge-image build --version V --out FILE [--key NAME]"};
  edge::images::BuildRequest req;
  req.version = required(o.version, "--version", "build");
  if (!edge::images::valid_version(req.version)) {
    throw UsageError{"--version '" + req.version + "' is not 1..4 dot-separated numbers (e.g. 1.2.0)"};
  }
  req.out = required(o.out, "--out", "build");
  req.key = o.key ? *o.key : "firmware";
  if (!edge::hsm::valid_signing_key_name(req.key)) throw UsageError{"invalid key name '" + req.key + "'"};
  req.compatible = compatible_of(o);
  if (o.rollback) {
    const std::string& r = *o.rollback;
    if (r.empty() || r.size() > 10 || (r.size() > 1 && r[0] == '0') ||
        r.find_first_not_of("0123456789") != std::string::npos || std::stoull(r) > 0xffffffffULL) {
      throw UsageError{"--rollback must be 0..4294967295, not '" + r + "'"};
    }
    req.rollback = static_cast<std::uint32_t>(std::stoull(r));
  }
  // SOURCE_DATE_EPOCH (reproducible builds): the same inputs give the same manifest.
  const char* epoch = std::getenv("SOURCE_DATE_EPOCH");
  req.built_unix =
      epoch != nullptr && *epoch != '\0' ? std::atoll(epoch) : static_cast<std::int64_t>(std::time(nullptr));
  req.files = inputs_of(o);

  edge::hsm::Hsm hsm(hsm_config_of(o));
  edge::hsm::SigningKeys keys(hsm);
  if (!keys.exists(req.key)) {
    throw ImageError("signing key '" + req.key + "' is not in the HSM (create it: edge-hsm signkey create " +
                     req.key + ")");
  }
  const edge::hsm::SigningKeyInfo key = keys.get(req.key);
  // The default list carries the signer's public half as the installed
  // system's keyring (etc/keyring/NAME.pub.pem in the slot), so that a bundle
  // can also ship the key its successors are signed with.
  struct RemoveOnExit {
    fs::path path;
    ~RemoveOnExit() {
      std::error_code ignored;
      if (!path.empty()) fs::remove(path, ignored);
    }
  } keyring_file;
  if (o.files.empty()) {
    keyring_file.path = fs::path(req.out.string() + ".keyring.tmp");
    std::ofstream pem(keyring_file.path, std::ios::trunc);
    pem << edge::hsm::public_key_pem(key.public_key_der);
    pem.close();
    if (!pem) throw ImageError("cannot write " + keyring_file.path.string());
    fs::permissions(keyring_file.path, fs::perms(0644));
    req.files.push_back({"etc/keyring/" + req.key + ".pub.pem", keyring_file.path});
  }
  double sign_ms = 0;
  const auto t_build = std::chrono::steady_clock::now();
  const edge::images::Manifest m =
      edge::images::build_bundle(req, [&](std::span<const std::uint8_t> manifest) {
        const auto t0 = std::chrono::steady_clock::now();
        const edge::images::Sha256 digest = edge::images::sha256(manifest);
        const edge::hsm::EcdsaSignature raw = keys.sign_digest(req.key, digest);
        sign_ms = ms_since(t0);
        return edge::images::ecdsa_raw_to_der(raw);
      });
  const double build_ms = ms_since(t_build);
  // The bundle must verify with the public half a device will hold, before anybody ships it.
  const auto t_verify = std::chrono::steady_clock::now();
  edge::images::verify_bundle(
      req.out,
      edge::images::TrustKey::from_pem(edge::hsm::public_key_pem(key.public_key_der), "key " + req.key),
      req.compatible);
  const double verify_ms = ms_since(t_verify);
  std::cout << "bundle " << req.out.string() << " version=" << m.version << " compatible=" << m.compatible
            << " files=" << m.files.size() << " payload_bytes=" << m.payload_size() << " key=" << req.key
            << " rollback=" << m.rollback << '\n'
            << "timing build_ms=" << static_cast<long>(build_ms) << " hsm_sign_ms=" << sign_ms
            << " verify_ms=" << static_cast<long>(verify_ms) << '\n';
  return kExitOk;
}

// The keys a bundle must verify with: the installed system's keyring
// (EDGE_IMAGE_KEYRING, or --keyring for another root), or with --trust one
// key file, for development; that is said on stdout before anything else.
edge::images::Keyring trust_of(const Options& o) {
  if (o.trust && o.keyring) throw UsageError{"--trust and --keyring exclude each other"};
  if (o.trust) {
    std::cout << "note: development trust: --trust " << *o.trust << " instead of the installed keyring "
              << EDGE_IMAGE_KEYRING << '\n';
    return edge::images::keyring_of_file(*o.trust);
  }
  return edge::images::load_keyring(o.keyring ? fs::path(*o.keyring) : fs::path(EDGE_IMAGE_KEYRING));
}

edge::images::VerifiedBundle verified(const Options& o, const edge::images::Keyring& trust) {
  return edge::images::verify_bundle(o.args[1], trust, compatible_of(o));
}

int cmd_verify(const Options& o) {
  only(o, {&Options::trust, &Options::keyring, &Options::compatible}, "verify");
  if (o.args.size() != 2 || o.force)
    throw UsageError{"usage: edge-image verify FILE.bundle [--keyring DIR | --trust PUBKEY.pem]"};
  const auto b = verified(o, trust_of(o));
  std::cout << "ok " << b.path.string() << " version=" << b.manifest.version
            << " compatible=" << b.manifest.compatible << " built=" << b.manifest.built
            << " key=" << b.manifest.key << " rollback=" << b.manifest.rollback
            << " files=" << b.manifest.files.size() << '\n';
  for (const auto& f : b.manifest.files) {
    std::cout << "  " << f.path << " size=" << f.size << " sha256=" << edge::images::to_hex(f.sha256) << '\n';
  }
  return kExitOk;
}

std::uint32_t tries_of(const Options& o) {
  if (!o.tries) return edge::images::InstallOptions{}.tries;
  const std::string& s = *o.tries;
  if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(s) == 0 || std::stoul(s) > 100) {
    throw UsageError{"--tries must be 1..100, not '" + s + "'"};
  }
  return static_cast<std::uint32_t>(std::stoul(s));
}

int cmd_install(const Options& o) {
  only(o, {&Options::trust, &Options::keyring, &Options::root, &Options::tries, &Options::compatible},
       "install");
  if (o.args.size() != 2)
    throw UsageError{"usage: edge-image install FILE.bundle --root DIR [--keyring DIR | --trust PUBKEY.pem]"};
  edge::images::SlotStore store(required(o.root, "--root DIR", "install"));
  const edge::images::Keyring trust = trust_of(o);
  const edge::images::InstallOptions options{o.force, tries_of(o), o.allow_downgrade,
                                             (o.trust ? "development " : "") + trust.origin};
  const auto b = verified(o, trust);
  const auto r = store.install(b, options);
  if (r.downgrade) {
    std::cerr << "edge-image: warning: downgrade allowed: rollback index " << r.rollback
              << " below the stored " << r.stored_rollback << " (recorded in "
              << (store.root() / "audit.log").string() << ")\n";
  }
  std::cout << "installed " << r.version << " into slot " << r.slot << " (" << store.slot_dir(r.slot).string()
            << "), trying for " << options.tries << " boots; active "
            << (r.replaced_version.empty() ? std::string("none") : r.replaced_version) << '\n';
  return kExitOk;
}

void print_slot(const edge::images::SlotStore& store, const edge::images::Slot& s) {
  std::cout << "slot=" << s.name << " state=" << to_string(s.state)
            << " version=" << (s.version.empty() ? std::string("-") : s.version) << " tries=" << s.tries
            << " path=" << store.slot_dir(s.name).string() << " rollback=" << s.rollback << '\n';
}

int cmd_root_only(const Options& o, const std::string& cmd) {
  only(o, {&Options::root}, cmd.c_str());
  if (o.args.size() != 1 || o.force) throw UsageError{"usage: edge-image " + cmd + " --root DIR"};
  edge::images::SlotStore store(required(o.root, "--root DIR", cmd.c_str()));
  if (cmd == "boot") {
    const auto r = store.boot();
    if (r.fell_back) {
      std::cerr << "edge-image: slot " << r.failed_slot << " ran out of tries; falling back to slot "
                << r.slot << '\n';
    }
    print_slot(store, r.info);
  } else if (cmd == "mark-good") {
    const char slot = store.mark_good();
    std::cout << "slot " << slot << " committed (good, active)\n";
  } else {
    const auto s = store.status();
    std::cout << "active=" << (s.active ? std::string(1, s.active) : "-")
              << " booted=" << (s.booted ? std::string(1, s.booted) : "-") << " rollback=" << s.rollback
              << '\n';
    print_slot(store, s.a);
    print_slot(store, s.b);
  }
  return kExitOk;
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (o.help || (!o.args.empty() && o.args[0] == "help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (o.args.empty()) throw UsageError{"no command (try --help)"};
  const std::string& cmd = o.args[0];
  if (!o.files.empty() && cmd != "build") throw UsageError{"--file applies to build only"};
  if (o.force && cmd != "install") throw UsageError{"--force applies to install only"};
  if (o.allow_downgrade && cmd != "install") throw UsageError{"--allow-downgrade applies to install only"};
  if (cmd == "build") return cmd_build(o);
  if (cmd == "verify") return cmd_verify(o);
  if (cmd == "install") return cmd_install(o);
  if (cmd == "boot" || cmd == "mark-good" || cmd == "status") return cmd_root_only(o, cmd);
  throw UsageError{"unknown command '" + cmd + "' (try --help)"};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "edge-image: " << e.message << '\n';
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "edge-image: " << e.what() << '\n';
    return kExitFailure;
  }
}
