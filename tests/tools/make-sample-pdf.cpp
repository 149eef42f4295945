// Writes data/sample/products/warehouse-safety-guide.pdf, the sample corpus's PDF, with the test PDF
// writer. Run once after changing the text and commit the result:
//   cmake --build <build> --target make-sample-pdf && <build>/tests/make-sample-pdf data/sample
#include <cstdio>
#include <string>
#include <vector>

#include "tests/support/pdf-writer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make-sample-pdf <data/sample folder>\n");
    return 2;
  }
  std::vector<std::string> pages = {
      "Warehouse Safety Guide for Rover Deployments\n\n"
      "Northwind Robotics, Field Service. Edition 4, 2024.\n\n"
      "This guide is for site managers and shift leads at customer warehouses where Northwind Rover X2 "
      "robots operate next to people. It explains how the robots keep people safe, what the site must "
      "provide, and what to do when something goes wrong. Keep a printed copy at every charging dock.\n\n"
      "1. How the robots keep people safe\n\n"
      "Every Rover X2 carries two safety lidars that watch a protective field around the robot. The field "
      "grows with speed. When a person or an obstacle enters it, the robot slows down, and if the field is "
      "still occupied the robot stops within half a metre. Robots never reverse into an aisle they cannot "
      "see. Near people the top speed is limited to 1.2 metres per second.",

      "2. What the site must provide\n\n"
      "Aisles used by robots must be at least 1.6 metres wide and kept free of pallets, cables and shrink "
      "wrap. Floor markers and reflectors installed by Northwind must not be covered or moved. Lighting "
      "must be at least 150 lux along robot routes, because the depth cameras need it to see low obstacles. "
      "Wi-Fi or private 5G coverage must reach every aisle; robots keep working for up to 30 minutes "
      "without a connection, then stop safely and wait.\n\n"
      "Pedestrian crossings on robot routes are painted yellow and marked with the Northwind crossing "
      "sign. Robots slow to walking pace at every marked crossing.\n\n"
      "3. Training\n\n"
      "Every person who works in an area with robots completes the 30 minute Rover awareness course "
      "before their first shift. Shift leads complete the two hour operator course, which covers "
      "pausing a fleet, moving a robot by hand and clearing a blocked aisle.",

      "4. Emergency stops\n\n"
      "Each robot has four red emergency stop buttons, one on every corner. Pressing one stops the robot "
      "at once and cuts power to the drive units. A stopped robot shows a red light ring and must be "
      "released by a trained operator with the service key after the cause has been cleared.\n\n"
      "The whole fleet at a site can be paused from the Fleet Platform console or with the wall-mounted "
      "fleet stop button next to each charging dock. Use the fleet stop for a fire alarm, a spill of "
      "hazardous goods or any situation where people need the aisles free.\n\n"
      "5. Reporting incidents\n\n"
      "Report every collision, near miss or unexpected robot behaviour to Northwind Field Service within "
      "24 hours, even when nobody was hurt. Call the 24 hour support line at +1 253 555 0142 in North "
      "America or +31 10 555 0199 in Europe. Do not move an involved robot unless it blocks an emergency "
      "exit; its logs help us find the cause.",

      "6. Charging and batteries\n\n"
      "Robots charge themselves at X-Dock chargers. Keep one metre clear in front of every dock. Never "
      "open a battery compartment: batteries are replaced only by Northwind technicians. A battery that "
      "is swollen, hot to the touch or smells of solvent must be reported at once; evacuate the area "
      "around the robot and call the support line.\n\n"
      "7. Contacts\n\n"
      "Field Service Tacoma: field.tacoma@northwind.example. Field Service Rotterdam: "
      "field.rotterdam@northwind.example. Safety team: safety@northwind.example."};
  std::string path = std::string(argv[1]) + "/products/warehouse-safety-guide.pdf";
  rag::test::write_pdf(path, pages, "Warehouse Safety Guide for Rover Deployments");
  std::printf("wrote %s\n", path.c_str());
  return 0;
}
