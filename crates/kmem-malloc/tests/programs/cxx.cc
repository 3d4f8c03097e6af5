// C++ under libkmalloc: new/delete (through libstdc++'s operator new, which
// calls malloc), containers, strings, shared pointers, threads, and
// exceptions (libstdc++ allocates them with malloc and unwinds through
// libgcc_s, while libkmalloc carries its own private copy of the unwinder).
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct Node {
    std::string name;
    std::vector<int> data;
    std::unique_ptr<Node> next;
};

static unsigned long work(int seed) {
    std::map<std::string, std::vector<long>> m;
    std::unordered_map<long, std::string> u;
    unsigned long h = 1469598103934665603ul;
    for (int i = 0; i < 20000; i++) {
        long k = (i * 2654435761u + seed) % 5000;
        m[std::to_string(k)].push_back(i);
        u[k] = std::string(k % 100 + 1, char('a' + k % 26));
        if (i % 7 == 0) m.erase(std::to_string((k * 31) % 5000));
    }
    std::unique_ptr<Node> head;
    for (int i = 0; i < 2000; i++) {
        auto n = std::make_unique<Node>();
        n->name = "node" + std::to_string(i);
        n->data.assign(i % 50, i);
        n->next = std::move(head);
        head = std::move(n);
    }
    for (Node *n = head.get(); n; n = n->next.get())
        for (int x : n->data) h = (h ^ (unsigned long)x) * 1099511628211ul;
    while (head) head = std::move(head->next);
    for (auto &kv : m) for (long x : kv.second) h = (h ^ (unsigned long)x) * 1099511628211ul;
    for (auto &kv : u) h += kv.second.size() * (unsigned long)kv.first;
    auto arr = new int[100000];
    for (int i = 0; i < 100000; i++) arr[i] = (i * 7919) % 100003;
    std::sort(arr, arr + 100000);
    h += (unsigned long)arr[500];
    delete[] arr;
    std::vector<std::shared_ptr<std::string>> shared;
    for (int i = 0; i < 10000; i++) shared.push_back(std::make_shared<std::string>(i % 300, 'x'));
    for (auto &s : shared) h += s->size();
    for (int i = 0; i < 3000; i++) {
        try {
            if (i % 3 == 0) throw std::runtime_error("odd " + std::to_string(i));
            h += (unsigned long)i;
        } catch (const std::exception &e) {
            h = (h ^ std::string(e.what()).size()) * 1099511628211ul;
        }
    }
    return h;
}

int main() {
    std::vector<std::thread> threads;
    std::vector<unsigned long> results(8);
    std::mutex mu;
    std::vector<std::string> log;
    for (int t = 0; t < 8; t++)
        threads.emplace_back([t, &results, &mu, &log] {
            results[t] = work(t);
            std::lock_guard<std::mutex> g(mu);
            log.push_back("thread " + std::to_string(t));
        });
    for (auto &t : threads) t.join();
    std::sort(log.begin(), log.end());
    for (auto &l : log) std::printf("%s done\n", l.c_str());
    for (int t = 0; t < 8; t++) std::printf("result %d %lu\n", t, results[t]);
    return 0;
}
