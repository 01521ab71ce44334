"""The reference RT-TDDFT propagator (PySCF for SCF, integrals and Fock builds; the propagation is rtml's)."""
