# Disk use of 1,000 one-record partitions and one 3.9 MiB partition, while a broker runs and
# after a clean stop: python3 scripts/reservation-du.py <ferry binary> <port> (needs kafka-python).
import subprocess, sys, time, os, shutil
from kafka.admin import KafkaAdminClient, NewTopic
from kafka import KafkaProducer
binary, port = sys.argv[1], sys.argv[2]
d = f"/tmp/ferry-du-{os.path.basename(binary)}"
shutil.rmtree(d, ignore_errors=True)
p = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", d], stderr=subprocess.DEVNULL)
time.sleep(1.5)
a = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
a.create_topics([NewTopic("small", 1000, 1), NewTopic("big", 1, 1)])
pr = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", linger_ms=5)
for i in range(1000):
    pr.send("small", b"x" * 30, partition=i)
for i in range(4000):
    pr.send("big", b"y" * 1000, partition=0)
pr.flush(); time.sleep(1)
def du(path):
    return int(subprocess.check_output(["du", "-sk", path]).split()[0])
small = sum(du(os.path.join(d, f"small-{i}")) for i in range(1000))
logsize = sum(os.path.getsize(os.path.join(d, f"small-{i}", "00000000000000000000.log")) for i in range(1000))
big = du(os.path.join(d, "big-0")); bigsize = os.path.getsize(os.path.join(d, "big-0", "00000000000000000000.log"))
print(f"{os.path.basename(binary)}: 1000 small partitions: {logsize} bytes of data, {small} KiB on disk; big partition: {bigsize//1024} KiB of data, {big} KiB on disk (running)")
p.terminate(); p.wait()
print(f"  after a clean stop: small {sum(du(os.path.join(d, f'small-{i}')) for i in range(1000))} KiB, big {du(os.path.join(d, 'big-0'))} KiB")
