"""Acting on incidents from where people are: Slack buttons, SMS replies, key presses."""

# Where the providers post (no bearer token: each request is signed by its provider).
SLACK_ACTIONS_PATH = "/api/v1/integrations/slack/actions"
TWILIO_SMS_PATH = "/api/v1/integrations/twilio/sms"
TWILIO_VOICE_PATH = "/api/v1/integrations/twilio/voice"
