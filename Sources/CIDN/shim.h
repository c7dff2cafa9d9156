#include <stdlib.h>
#include <stringprep.h>
