"""Push notifications: providers (FCM HTTP v1, signed webhooks) and the push worker."""
