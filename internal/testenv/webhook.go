package testenv

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// WaitWebhook blocks until a manager's webhook server has its certificate
// (certsReady is closed) and answers its started check, or timeout passes.
func WaitWebhook(ctx context.Context, certsReady <-chan struct{}, started func(*http.Request) error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-certsReady:
	case <-ctx.Done():
		return fmt.Errorf("webhook certificate not ready after %s", timeout)
	}
	for {
		if err := started(&http.Request{}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("webhook server not serving after %s", timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
