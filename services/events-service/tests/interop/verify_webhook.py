"""Verifies a webhook delivery with the stock Standard Webhooks library.

Usage: verify_webhook.py SECRET DELIVERY_JSON_FILE

The file holds {"headers": {name: value}, "body": "<raw body>"} as the
receiver got them. Prints {"verified": true, "event": ...} on success; exits
non-zero with the library's error otherwise. A replayed delivery (timestamp
outside the library's tolerance) fails the same way.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    secret, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as handle:
        delivery = json.load(handle)
    try:
        payload = Webhook(secret).verify(delivery["body"], delivery["headers"])
    except Exception as error:  # the library raises WebhookVerificationError
        print(json.dumps({"verified": False, "error": str(error)}))
        return 1
    print(json.dumps({"verified": True, "event": payload.get("event")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
