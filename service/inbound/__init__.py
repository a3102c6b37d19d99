"""Mail that comes back after the send: bounces (DSNs and the formats real servers use),
spam complaints (ARF), mailed unsubscribes, and the relays' webhooks saying the same; each
read into a `MailReport` and acted on by `apply_report`."""
