"""The agent's own answer to the trigger call (SIP IVR): PIN, mode menu, recording, trigger."""
