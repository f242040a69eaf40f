package sluice.javaclient;

import java.util.Objects;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import org.apache.kafka.common.KafkaFuture;

/** Assertions that fail with a message saying what was expected and what came, and bounded waits. */
final class Check {
    /** Bound on any single wait for the broker: a future, a condition polled, a consume loop. */
    static final long WAIT_MS = 60_000;
    /** How often a polled condition is looked at again. */
    static final long POLL_INTERVAL_MS = 100;

    private Check() {}

    /** Thrown by a failed check; Main prints it as the subcommand's FAIL line. */
    static final class Failure extends RuntimeException {
        Failure(String message) {
            super(message);
        }

        Failure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    static void require(boolean condition, String format, Object... args) {
        if (!condition) {
            throw new Failure(String.format(format, args));
        }
    }

    static void equal(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new Failure(what + ": expected " + expected + ", got " + actual);
        }
    }

    static void ok(String format, Object... args) {
        System.out.println("ok " + String.format(format, args));
        System.out.flush();
    }

    /** The future's value, bounded by {@link #WAIT_MS}; its failure (unwrapped) names the call. */
    static <T> T get(KafkaFuture<T> future, String what) {
        try {
            return future.get(WAIT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            throw new Failure(what + " failed", e.getCause());
        } catch (java.util.concurrent.TimeoutException e) {
            throw new Failure(what + " did not complete within " + WAIT_MS + " ms", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure(what + " interrupted", e);
        }
    }

    /** Requires the future to fail with an exception of class expected (the error code Kafka sends). */
    static void fails(KafkaFuture<?> future, Class<? extends Throwable> expected, String what) {
        try {
            Object value = future.get(WAIT_MS, TimeUnit.MILLISECONDS);
            throw new Failure(
                    what + ": expected " + expected.getSimpleName() + ", but it succeeded with " + value);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause();
            if (!expected.isInstance(cause)) {
                throw new Failure(what + ": expected " + expected.getSimpleName() + ", got "
                        + Main.describe(cause), cause);
            }
        } catch (java.util.concurrent.TimeoutException e) {
            throw new Failure(what + " did not complete within " + WAIT_MS + " ms", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure(what + " interrupted", e);
        }
    }

    /** Polls condition until it holds; fails after {@link #WAIT_MS} with what and the last state. */
    static void waitFor(String what, BooleanSupplier condition, java.util.function.Supplier<String> state) {
        long deadline = System.currentTimeMillis() + WAIT_MS;
        while (!condition.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                throw new Failure("timed out after " + WAIT_MS + " ms waiting for " + what
                        + "; last state: " + state.get());
            }
            sleep(POLL_INTERVAL_MS);
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure("interrupted", e);
        }
    }

    /**
     * Sluice bugs or gaps this suite found and that are not fixed yet: id -> reason. A check run
     * through {@link #known} prints KNOWN-FAILURE with the reason instead of failing the
     * subcommand; once it passes, the subcommand fails until the entry is removed (strict, so a
     * fix is noticed and the check guards it from then on).
     */
    static final java.util.Map<String, String> KNOWN_FAILURES = java.util.Map.of();

    /** Runs check; see {@link #KNOWN_FAILURES}. */
    static void known(String id, Runnable check) {
        String reason = KNOWN_FAILURES.get(id);
        require(reason != null, "no known failure %s", id);
        try {
            check.run();
        } catch (Failure e) {
            System.out.println("KNOWN-FAILURE " + id + ": " + reason + "; this run: " + e.getMessage());
            System.out.flush();
            return;
        }
        throw new Failure("known failure " + id + " passes now: remove it from Check.KNOWN_FAILURES");
    }

    /** Client properties every client of these tests shares. */
    static Properties clientProps(String bootstrap, String clientId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", clientId);
        // Bounded, so a broker that never answers fails the check instead of hanging it.
        p.put("request.timeout.ms", "30000");
        p.put("default.api.timeout.ms", "60000");
        return p;
    }

    /** A topic name unique to this run, so reruns against one broker do not collide. */
    static String uniqueName(String prefix) {
        return prefix + "-" + Long.toString(System.nanoTime() & 0xffffffffL, 36);
    }
}
