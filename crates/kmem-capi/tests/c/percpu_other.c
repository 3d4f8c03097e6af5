/* A second translation unit for percpu.c: DECLARE_PER_CPU of a variable
 * defined there, and a per-CPU variable of its own with an initialiser. */
#include <linux/percpu.h>

DECLARE_PER_CPU(long, packets);
DEFINE_PER_CPU(int, other_unit_var) = 7;

void count_packet_elsewhere(void);
int other_unit_value(int cpu);

void count_packet_elsewhere(void)
{
	this_cpu_inc(packets);
}

int other_unit_value(int cpu)
{
	return per_cpu(other_unit_var, cpu);
}
