// Opening the HSM: module by path, token by label or PKCS#11 URI (never by index), PIN handling.
#include <edge/hsm/error.h>
#include <edge/hsm/hsm.h>
#include <edge/test/fault_shim.h>
#include <edge/test/process.h>
#include <edge/test/raw_p11.h>
#include <edge/test/softhsm_fixture.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <string>

namespace {

using edge::hsm::Hsm;
using edge::hsm::HsmError;
using edge::hsm::HsmState;
using edge::hsm::Pkcs11Error;
using edge::test::FaultShim;
using edge::test::SoftHsmToken;
using ::testing::HasSubstr;
using ::testing::Not;

// Percent-encodes everything but unreserved characters, as RFC 7512 allows for any byte.
std::string pct(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

TEST(HsmOpen, FindsTheTokenByLabelAmongSeveral) {
  SoftHsmToken token;
  // More initialised tokens in the same SoftHSM, with random slot ids: whichever slot
  // comes first in C_GetSlotList, only the label decides.
  token.init_extra_token("edge-other-a");
  token.init_extra_token("edge-other-b");

  for (const std::string& label : {token.label(), std::string("edge-other-a"), std::string("edge-other-b")}) {
    auto config = token.config();
    config.token.label = label;
    Hsm hsm(config);
    auto status = hsm.status();
    EXPECT_EQ(status.state, HsmState::available);
    EXPECT_EQ(status.token_label, label);
    EXPECT_EQ(status.token_serial, token.serial_of(label));
    EXPECT_THAT(status.module_description, HasSubstr("SoftHSM")) << "manufacturer missing";
    EXPECT_TRUE(status.last_error.empty()) << status.last_error;
  }
}

TEST(HsmOpen, FindsTheTokenByPkcs11Uri) {
  SoftHsmToken token;
  token.init_extra_token("edge-other");

  auto config = token.config();
  config.token.label = "edge-other";  // the URI overrides label/serial
  config.token.uri = token.uri();
  {
    Hsm hsm(config);
    EXPECT_EQ(hsm.status().token_label, token.label());
    EXPECT_EQ(hsm.status().token_serial, token.serial());
  }
  // Every character percent-encoded is still the same token.
  config.token.uri = "pkcs11:token=" + pct(token.label()) + ";serial=" + pct(token.serial());
  {
    Hsm hsm(config);
    EXPECT_EQ(hsm.status().token_label, token.label());
  }
}

TEST(HsmOpen, UriNeverSelectsBySlotAndNeverCarriesThePin) {
  SoftHsmToken token;
  auto config = token.config();
  config.token.uri = "pkcs11:token=" + token.label() + ";slot-id=1";
  try {
    Hsm hsm(config);
    FAIL() << "accepted a slot-id in the URI";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("slot-id"));
  }
  // A pin-value in the URI is ignored: the PIN comes from the configured source only.
  config.token.uri = "pkcs11:token=" + token.label() + "?pin-value=wrong-pin-999";
  Hsm hsm(config);
  EXPECT_EQ(hsm.state(), HsmState::available);
  EXPECT_THAT(hsm.status().last_error, Not(HasSubstr("wrong-pin-999")));
}

TEST(HsmOpen, NoTokenSelectorIsAConfigurationError) {
  SoftHsmToken token;
  auto config = token.config();
  config.token = {};
  EXPECT_THROW(Hsm{config}, HsmError);
}

TEST(HsmOpen, UriWithTheWrongSerialFindsNothing) {
  SoftHsmToken token;
  auto config = token.config();
  config.token.uri = "pkcs11:token=" + token.label() + ";serial=0000000000000000";
  EXPECT_THROW(Hsm{config}, HsmError);
}

TEST(HsmOpen, LabelNarrowedBySerial) {
  SoftHsmToken token;
  auto config = token.config();
  config.token.serial = token.serial();
  Hsm hsm(config);
  EXPECT_EQ(hsm.status().token_serial, token.serial());

  config.token.serial = "ffffffffffffffff";
  EXPECT_THROW(Hsm{config}, HsmError);
}

TEST(HsmOpen, MissingLabelIsAnErrorNamingTheLabel) {
  SoftHsmToken token;
  auto config = token.config();
  config.token.label = "no-such-token-xyz";
  try {
    Hsm hsm(config);
    FAIL() << "opened a token that does not exist";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("no-such-token-xyz"));
  }
}

TEST(HsmOpen, BadModulePathIsAClearError) {
  SoftHsmToken token;
  auto config = token.config();
  config.module_path = token.dir().string() + "/no-such-module.so";
  try {
    Hsm hsm(config);
    FAIL() << "loaded a module that does not exist";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr(config.module_path));
  }
}

TEST(HsmOpen, LibraryThatIsNoPkcs11ModuleIsAClearError) {
  SoftHsmToken token;
  auto config = token.config();
  // A real shared library, but without C_GetFunctionList.
  config.module_path = EDGE_NOT_PKCS11_PATH;
  try {
    Hsm hsm(config);
    FAIL() << "accepted a library without C_GetFunctionList";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("C_GetFunctionList"));
  }
}

TEST(HsmOpen, WrongPinIsRefusedOnceAndNeverRetried) {
  SoftHsmToken token;
  FaultShim shim(token);  // no rules: only counts the calls that reach the token
  edge::test::write_file(token.pin_file(), "wrong-pin-000\n", 0600);
  try {
    Hsm hsm(shim.config());
    FAIL() << "logged in with a wrong PIN";
  } catch (const Pkcs11Error& e) {
    EXPECT_EQ(e.rv(), CKR_PIN_INCORRECT);
    EXPECT_EQ(e.function(), "C_Login");
    EXPECT_THAT(e.what(), HasSubstr("CKR_PIN_INCORRECT"));
    EXPECT_THAT(e.what(), Not(HasSubstr("wrong-pin-000")));
  }
  // One attempt: a retry loop would burn the token's PIN counter and lock it.
  EXPECT_EQ(shim.calls("C_Login"), 1u);

  // The token now reports CKF_USER_PIN_COUNT_LOW: even with the right PIN the edge does not
  // try again (a second wrong one could lock it); the refusal names the flag.
  edge::test::write_file(token.pin_file(), token.user_pin() + "\n", 0600);
  try {
    Hsm hsm(shim.config());
    FAIL() << "logged in although the token reports CKF_USER_PIN_COUNT_LOW";
  } catch (const Pkcs11Error& e) {
    EXPECT_EQ(e.rv(), CKR_PIN_LOCKED);
    EXPECT_THAT(e.what(), HasSubstr("CKF_USER_PIN_COUNT_LOW"));
  }
  EXPECT_EQ(shim.calls("C_Login"), 1u);

  // The token is not locked: one login by hand (the operator's token tool) resets the
  // counter, and then the edge opens it.
  {
    edge::test::RawP11 p11(edge::test::softhsm_module_path());
    const CK_SESSION_HANDLE s = p11.open_session(p11.slot_by_label(token.label()), false);
    p11.login(s, token.user_pin());
    p11.f().C_Logout(s);
    p11.f().C_CloseSession(s);
  }
  Hsm hsm(shim.config());
  EXPECT_EQ(hsm.state(), HsmState::available);
}

TEST(HsmOpen, PinFileReadableByOthersIsRefusedBeforeLogin) {
  SoftHsmToken token;
  FaultShim shim(token);
  ASSERT_EQ(::chmod(token.pin_file().c_str(), 0644), 0);
  try {
    Hsm hsm(shim.config());
    FAIL() << "used a world-readable PIN file";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr(token.pin_file().string()));
    EXPECT_THAT(e.what(), Not(HasSubstr(token.user_pin())));
  }
  EXPECT_EQ(shim.calls("C_Login"), 0u);
}

TEST(HsmOpen, MissingPinFileIsAClearError) {
  SoftHsmToken token;
  auto config = token.config();
  config.pin.location = token.dir().string() + "/absent.pin";
  try {
    Hsm hsm(config);
    FAIL() << "opened without a PIN";
  } catch (const HsmError& e) {
    EXPECT_THAT(e.what(), HasSubstr("absent.pin"));
  }
}

TEST(HsmOpen, PinFromAnEnvironmentVariable) {
  SoftHsmToken token;
  edge::test::ScopedEnv pin("EDGE_TEST_HSM_PIN", token.user_pin());
  auto config = token.config();
  config.pin = {edge::hsm::PinSource::Kind::env, "EDGE_TEST_HSM_PIN"};
  Hsm hsm(config);
  EXPECT_EQ(hsm.state(), HsmState::available);

  config.pin.location = "EDGE_TEST_HSM_PIN_UNSET";
  EXPECT_THROW(Hsm{config}, HsmError);
}

TEST(HsmOpen, LogsInOnceAndCountsIt) {
  SoftHsmToken token;
  Hsm hsm(token.config());
  auto c = hsm.counters().snapshot();
  EXPECT_EQ(c.login, 1u);
  EXPECT_EQ(c.failures, 0u);
  EXPECT_EQ(c.recoveries, 0u);
}

TEST(HsmOpen, StatusNeverShowsThePin) {
  SoftHsmToken token;
  edge::test::write_file(token.pin_file(), "wrong-pin-111\n", 0600);
  try {
    Hsm hsm(token.config());
  } catch (const std::exception& e) {
    EXPECT_THAT(e.what(), Not(HasSubstr("wrong-pin-111")));
  }
}

}  // namespace
