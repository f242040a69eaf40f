package sluice.javaclient;

import java.util.Arrays;
import java.util.List;

/**
 * The Java client (org.apache.kafka:kafka-clients) against a running Sluice broker.
 *
 * <pre>
 * java -jar sluice-java-client.jar BOOTSTRAP SUBCOMMAND [ARGS]
 *   admin                          AdminClient: cluster, topics, configs, partitions
 *   produce-consume COMPRESSION... KafkaProducer with its defaults (idempotence, acks=all)
 *                                  per compression type, read back exactly by a KafkaConsumer
 *   group classic|consumer         two consumers in a group: commits, a rebalance when the
 *                                  second joins, a takeover when the first leaves, and a
 *                                  restarted consumer that resumes from the committed offsets
 *   transactions                   the transactional producer (transactions v2): commit, abort,
 *                                  sendOffsetsToTransaction, read_committed, fencing
 * </pre>
 *
 * Each subcommand prints one "ok ..." line per check that passed and ends with "PASS name" and
 * exit status 0; the first failed check prints "FAIL name: what was expected and what came"
 * and exits 1. Every wait is bounded (see {@link Check#WAIT_MS}).
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        if (args.length < 2) {
            usage();
        }
        String bootstrap = args[0];
        String command = args[1];
        List<String> rest = Arrays.asList(args).subList(2, args.length);
        String name = String.join(" ", Arrays.asList(args).subList(1, args.length));
        try {
            switch (command) {
                case "admin" -> AdminTest.run(bootstrap);
                case "transactions" -> TxnTest.run(bootstrap);
                case "produce-consume" -> {
                    if (rest.isEmpty()) {
                        usage();
                    }
                    ProduceConsumeTest.run(bootstrap, rest);
                }
                case "group" -> {
                    if (rest.size() != 1) {
                        usage();
                    }
                    GroupTest.run(bootstrap, rest.get(0));
                }
                default -> usage();
            }
        } catch (Throwable e) {
            System.out.println("FAIL " + name + ": " + describe(e));
            e.printStackTrace(System.out);
            System.out.flush();
            System.exit(1);
        }
        System.out.println("PASS " + name);
        System.out.flush();
        // Client threads (metadata, heartbeats) are closed by now; exit explicitly anyway so a
        // stray non-daemon thread cannot keep the JVM, and the Rust test, waiting.
        System.exit(0);
    }

    /** The message of e and of every cause, so a wrapped Kafka error names its error code. */
    static String describe(Throwable e) {
        StringBuilder out = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (out.length() > 0) {
                out.append(" <- caused by ");
            }
            out.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
            if (t.getCause() == t) {
                break;
            }
        }
        return out.toString();
    }

    private static void usage() {
        System.err.println(
                "usage: java -jar sluice-java-client.jar BOOTSTRAP "
                        + "(admin | produce-consume COMPRESSION... | group classic|consumer)");
        System.exit(2);
    }
}
