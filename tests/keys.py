"""API keys the test emulator accepts (fake, emulator-only)."""

ALICE = "sk-bab-test-alice"
BOB = "sk-bab-test-bob"
EXPIRED = "sk-bab-test-expired"
